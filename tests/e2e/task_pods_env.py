"""The task-pods stack of the e2e session (issue 16): config and the registry passwords set as
secrets (conftest.task_pods_outputs)."""

# Registry passwords of the task-pods stack (issue 16): set as secrets, never seen in clear.
TASK_PODS_PASSWORDS = ("e2e-pull-p4ssw0rd-7c1f9a", "e2e-task-p4ssw0rd-b83e2d")
TASK_PODS_CONFIG = {
    "cloud": "existing",
    "clusterName": "remote-kpo-tasks",
    "deployments": [
        # Pulls a private image with the default ServiceAccount.
        {"name": "tp-pull", "xcom": False,
         "registries": [{"server": "registry.e2e.example:5000", "username": "kpo-bot"}]},
        # Runs tasks as remote-kpo-task (no cloud identity on existing), with a registry too.
        {"name": "tp-task", "taskIdentity": {},
         "registries": [{"server": "ghcr.io", "username": "acme-bot"}]},
    ],
}
