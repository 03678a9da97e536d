# shellcheck shell=bash
# scripts/env.sh — source this (bash) to use the project's tool chain:
#
#   source scripts/env.sh
#
# Puts .toolchain/bin (built by scripts/toolchain) first on PATH and points
# Pulumi at project-local state, and kubectl at the local control plane
# (scripts/local-cluster), with that cluster's ports. Sets umask 077: the state
# (every Deployment's kubeconfig, under a published dev passphrase) is created
# private, 0700 folders and 0600 files. Safe to source more than once.

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
# The file backend writes with the process's umask (gocloud.dev/blob/fileblob: files 0666, folders
# 0777, less the umask): keep its state, and whatever else this shell makes, to the user.
umask 077
mkdir -p "$_rkpo_root/.pulumi-state"
# State written before under a looser umask.
find "$_rkpo_root/.pulumi-state" -perm /077 -exec chmod go= {} +
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
# The ports the cluster was created with (scripts/local-cluster keeps them in its folder), so a
# new shell reaches this checkout's cluster, not whatever listens on the default ports.
_rkpo_refused=
if [ -f "$REMOTE_KPO_CLUSTER_DIR/ports.env" ]; then
	while IFS='=' read -r _rkpo_name _rkpo_value; do
		case "$_rkpo_name" in REMOTE_KPO_*_PORT) ;; *) continue ;; esac
		if [ -n "${!_rkpo_name:-}" ] && [ "${!_rkpo_name}" != "$_rkpo_value" ]; then
			echo "scripts/env.sh: warning: $_rkpo_name=${!_rkpo_name} replaced by this cluster's $_rkpo_value" \
				"($REMOTE_KPO_CLUSTER_DIR/ports.env; \`scripts/local-cluster down\` to move it)" >&2
		fi
		export "$_rkpo_name=$_rkpo_value"
	done < "$REMOTE_KPO_CLUSTER_DIR/ports.env"
	_rkpo_port=$(sed -n 's#^ *server: https://[^:]*:\([0-9]*\).*#\1#p' "$KUBECONFIG" 2>/dev/null | head -n1)
	if [ -f "$KUBECONFIG" ] && [ "$_rkpo_port" != "${REMOTE_KPO_APISERVER_PORT:-}" ]; then
		echo "scripts/env.sh: error: $KUBECONFIG points at port ${_rkpo_port:-?}, which this cluster does" \
			"not own (REMOTE_KPO_APISERVER_PORT=${REMOTE_KPO_APISERVER_PORT:-?}); \`scripts/local-cluster down\`" \
			"wipes the cluster, then \`up\` starts afresh" >&2
		_rkpo_refused=1
	fi
fi

unset _rkpo_root _rkpo_name _rkpo_value _rkpo_port
if [ -n "$_rkpo_refused" ]; then unset _rkpo_refused; return 1; fi
unset _rkpo_refused
