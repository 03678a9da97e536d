//go:build tools

// Package tools pins the main package scripts/toolchain builds from this module: Karpenter with
// its kwok cloud provider (sigs.k8s.io/karpenter/kwok), the upstream autoscaler that scales the
// local GPU pool from zero and back (scripts/local-cluster, REMOTE_KPO_KARPENTER=1). Its CRDs
// come from the same module version (pkg/apis/crds, kwok/apis/crds).
package tools

import _ "sigs.k8s.io/karpenter/kwok"
