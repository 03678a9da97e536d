from components.permissions import CLOUD_ACTIONS, KPO_PERMISSIONS, kpo_role_rules

CORE = [""]


def test_role_with_xcom_grants_exactly_the_table_including_pods_exec():
    assert kpo_role_rules(xcom=True) == [
        {"api_groups": CORE, "resources": ["pods"], "verbs": ["list", "create", "get", "patch", "delete"]},
        {"api_groups": CORE, "resources": ["pods/log"], "verbs": ["get"]},
        {"api_groups": CORE, "resources": ["events"], "verbs": ["list", "watch"]},
        {"api_groups": CORE, "resources": ["resourcequotas"], "verbs": ["list"]},
        {"api_groups": CORE, "resources": ["pods/exec"], "verbs": ["create", "get"]},
    ]


def test_role_without_xcom_has_no_pods_exec():
    rules = kpo_role_rules(xcom=False)
    assert [r["resources"] for r in rules] == [["pods"], ["pods/log"], ["events"], ["resourcequotas"]]


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
