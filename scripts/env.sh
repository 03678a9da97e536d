# shellcheck shell=bash
# scripts/env.sh — source this (bash) to use the project's tool chain:
#
#   source scripts/env.sh
#
# Puts .toolchain/bin (built by scripts/toolchain) first on PATH and points
# Pulumi at project-local state, and kubectl at the local control plane
# (scripts/local-cluster). Safe to source more than once.

_rkpo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
export REMOTE_KPO_ROOT="$_rkpo_root"

case ":$PATH:" in
	*":$_rkpo_root/.toolchain/bin:"*) ;;
	*) export PATH="$_rkpo_root/.toolchain/bin:$PATH" ;;
esac

# Pulumi: plugins come only from the project-local PULUMI_HOME (populated by
# scripts/toolchain); never download plugins or check for CLI updates.
export PULUMI_HOME="$_rkpo_root/.toolchain/pulumi-home"
export PULUMI_SKIP_UPDATE_CHECK=true
export PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION=true
mkdir -p "$_rkpo_root/.pulumi-state"
# metadata=skip: the file backend (gocloud fileblob) writes no `<file>.attrs` sidecars. It
# rewrote them in place, so a SIGKILL mid-write left an empty one and every later command failed
# with `failed to load checkpoint: EOF`; nothing in Pulumi reads them.
export PULUMI_BACKEND_URL="file://$_rkpo_root/.pulumi-state?metadata=skip"
if [ -z "${PULUMI_CONFIG_PASSPHRASE+x}" ] && [ -z "${PULUMI_CONFIG_PASSPHRASE_FILE:-}" ]; then
	export PULUMI_CONFIG_PASSPHRASE=remote-kpo-dev
fi

# Local control plane (scripts/local-cluster up).
export REMOTE_KPO_CLUSTER_DIR="${REMOTE_KPO_CLUSTER_DIR:-$_rkpo_root/.toolchain/cluster}"
export KUBECONFIG="$REMOTE_KPO_CLUSTER_DIR/admin.kubeconfig"

unset _rkpo_root
