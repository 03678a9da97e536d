//go:build tools

// Package tools pins the main package scripts/toolchain builds from this module: Kueue's manager
// (sigs.k8s.io/kueue/cmd/kueue), which scripts/local-cluster runs out of cluster with
// REMOTE_KPO_KUEUE=1 (its webhooks reached by URL). Its CRDs come from the same module version
// (config/components/crd/bases).
package tools

import _ "sigs.k8s.io/kueue/cmd/kueue"
