"""Kueue's names as the program, the local cluster and scripts/verify use them: a leaf module,
free of Pulumi, so verify imports it where only the kubernetes client is installed."""

# The pinned Kueue release: its chart on the clouds (components/queueing.py), the same version
# built from source for the local cluster.
KUEUE_VERSION = "v0.17.0"
KUEUE_GROUP = "kueue.x-k8s.io"
# v1beta2 is the version Kueue v0.17 stores (+kubebuilder:storageversion in apis/kueue/v1beta2);
# v1beta1 is still served but deprecated.
KUEUE_API_VERSION = f"{KUEUE_GROUP}/v1beta2"
# Kueue's visibility API (an aggregated API served by the Kueue manager): pending workloads with
# their places in line (apis/visibility/v1beta2/types.go, PendingWorkload).
VISIBILITY_API_VERSION = f"visibility.{KUEUE_GROUP}/v1beta2"
QUEUE_LABEL = f"{KUEUE_GROUP}/queue-name"
# The LocalQueue Kueue defaults every pod of its namespace to (constants.DefaultLocalQueueName).
LOCAL_QUEUE = "default"
