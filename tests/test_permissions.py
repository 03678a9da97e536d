from components.permissions import CLOUD_ACTIONS, KPO_PERMISSIONS, kpo_role_rules

CORE = [""]


def test_role_with_xcom_grants_exactly_the_table_including_pods_exec():
    assert kpo_role_rules(xcom=True) == [
        {"api_groups": CORE, "resources": ["pods"], "verbs": ["list", "create", "get", "patch", "delete"]},
        {"api_groups": CORE, "resources": ["pods/log"], "verbs": ["get"]},
        {"api_groups": CORE, "resources": ["events"], "verbs": ["list", "watch"]},
        {"api_groups": CORE, "resources": ["pods/exec"], "verbs": ["create", "get"]},
    ]


def test_role_without_xcom_has_no_pods_exec():
    rules = kpo_role_rules(xcom=False)
    assert [r["resources"] for r in rules] == [["pods"], ["pods/log"], ["events"]]


def test_no_rule_grants_wildcards_secrets_configmaps_or_pod_watch():
    for rule in kpo_role_rules(xcom=True):
        assert "*" not in [*rule["verbs"], *rule["resources"], *rule["api_groups"]]
        assert not {"secrets", "configmaps", "nodes", "namespaces"} & set(rule["resources"])
        if rule["resources"] == ["pods"]:
            assert "watch" not in rule["verbs"] and "update" not in rule["verbs"]
        assert not {"escalate", "bind", "impersonate"} & set(rule["verbs"])


def test_only_pods_exec_depends_on_xcom():
    assert [p.resource for p in KPO_PERMISSIONS if p.xcom_only] == ["pods/exec"]


def test_no_cloud_action_grants_pod_rights_or_wildcards():
    for cloud, purposes in CLOUD_ACTIONS.items():
        for purpose in purposes.values():
            for action in purpose.actions:
                assert "*" not in action, (cloud, action)
                assert "pods" not in action.lower(), (cloud, action)


def test_gke_authentication_needs_only_clusters_get():
    assert CLOUD_ACTIONS["gke"]["authenticate"].actions == ("container.clusters.get",)


def test_with_queueing_the_role_may_read_its_local_queue_workloads_and_places_in_line_only():
    queue_rules = kpo_role_rules(xcom=False, queueing=True)[len(kpo_role_rules(xcom=False)):]
    assert queue_rules == [
        {"api_groups": ["kueue.x-k8s.io"], "resources": ["localqueues"], "verbs": ["get"]},
        {"api_groups": ["kueue.x-k8s.io"], "resources": ["workloads"], "verbs": ["list"]},
        {"api_groups": ["visibility.kueue.x-k8s.io"], "resources": ["localqueues/pendingworkloads"], "verbs": ["get"]},
    ]


def test_queue_rows_apply_only_with_queueing():
    assert [p.resource for p in KPO_PERMISSIONS if p.queueing_only] == [
        "localqueues.kueue.x-k8s.io", "workloads.kueue.x-k8s.io", "localqueues.visibility.kueue.x-k8s.io/pendingworkloads"]
    assert all("kueue" not in rule["api_groups"][0] for rule in kpo_role_rules(xcom=True))


def test_what_a_queued_deployment_must_not_do_is_outside_its_role():
    """Every write to its queue or Workloads, and every ClusterQueue (other Deployments' quota), is
    on the must-deny lists that verify and the e2e access matrix ask the API server about, and no
    rule of the Role grants it (the API server's verdict: tests/e2e/matrix.py)."""
    from components.permissions import MUST_DENY_CLUSTER_WIDE, MUST_DENY_IN_NAMESPACE, rbac_resource

    kueue_denied = {(verb, resource) for verb, resource in MUST_DENY_IN_NAMESPACE + MUST_DENY_CLUSTER_WIDE
                    if "kueue" in resource}
    assert {("patch", "workloads.kueue.x-k8s.io"), ("delete", "workloads.kueue.x-k8s.io"),
            ("update", "localqueues.kueue.x-k8s.io"), ("get", "clusterqueues.kueue.x-k8s.io"),
            ("list", "resourceflavors.kueue.x-k8s.io")} <= kueue_denied
    # Cluster-wide, the Deployment has no rule at all (a Role, no ClusterRole: test_dev_stack.py).
    rules = kpo_role_rules(xcom=True, queueing=True)
    for verb, resource in kueue_denied & set(MUST_DENY_IN_NAMESPACE):
        group, name = rbac_resource(resource)
        assert not [r for r in rules if group in r["api_groups"] and name in r["resources"] and verb in r["verbs"]], \
            (verb, resource)
