"""Options for the Kubernetes objects a cloud stack puts on the cluster it creates.

A cluster replaced under the same name must take every object on it along (issue 21 item 3),
and an upgrade of an existing stack must replace none. So the Kubernetes provider keeps the
cluster name as its `clusterIdentifier` (pulumi-kubernetes provider.go DiffConfig: an unchanged
identifier never replaces the provider or its objects), and each object is replaced with the
cluster instead (`replace_with`, pulumi step_generator.go `diff`). Replacing the provider itself
would not do: the engine replaces a provider's objects only when its DiffConfig asks for it.

Delete before replace, because a replacement by `replace_with` never reaches pulumi-kubernetes'
Diff, which is what makes a named object delete first: created first, the object's twin would be
made on the new cluster and then deleted there by the original's delete (the provider is updated
in place, so the delete goes to the new cluster, where a delete-first one finds nothing).
"""

import pulumi


def on_cluster(provider: pulumi.ProviderResource, cluster: pulumi.CustomResource) -> pulumi.ResourceOptions:
    """Made through `provider`, and with their children replaced (delete first) with `cluster`."""

    def replace_with_cluster(args: pulumi.ResourceTransformationArgs) -> pulumi.ResourceTransformationResult | None:
        if not isinstance(args.resource, pulumi.CustomResource):
            return None  # components are not replaced; their objects are
        return pulumi.ResourceTransformationResult(args.props, pulumi.ResourceOptions.merge(
            args.opts, pulumi.ResourceOptions(replace_with=[cluster], delete_before_replace=True)))

    # SDK-side transformations reach every descendant of the component given these options.
    return pulumi.ResourceOptions(providers=[provider], transformations=[replace_with_cluster])
