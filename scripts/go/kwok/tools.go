//go:build tools

// Package tools pins the main package scripts/toolchain builds from this module:
// kwok (sigs.k8s.io/kwok/cmd/kwok), which plays the kubelet for fake nodes on the
// local control plane (scripts/local-cluster).
package tools

import _ "sigs.k8s.io/kwok/cmd/kwok"
