//go:build tools

// Package tools keeps the provider's packages in this module's go.mod/go.sum.
// The real main package is copied from the module cache at build time (see
// scripts/toolchain), because it embeds generated JSON files that the module
// zip does not contain.
package tools

import (
	_ "github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	_ "github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)
