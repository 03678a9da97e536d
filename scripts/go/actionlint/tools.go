//go:build tools

// Package tools pins the main package scripts/toolchain builds from this module:
// actionlint (github.com/rhysd/actionlint/cmd/actionlint), which lints the GitHub
// Actions templates in ci/github/ (tests/test_ci_templates.py).
package tools

import _ "github.com/rhysd/actionlint/cmd/actionlint"
