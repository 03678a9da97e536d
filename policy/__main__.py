"""The remote-kpo policy pack: `pulumi preview --policy-pack policy` (or `up`).

Only assembles the pack; the rules and their descriptions are in rules.py (see README.md).
Every rule is mandatory: a violation stops the preview or update.
"""

from pulumi_policy import EnforcementLevel, PolicyPack, ResourceValidationPolicy, StackValidationPolicy

from rules import RULES

PolicyPack(
    "remote-kpo",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        (StackValidationPolicy if rule.stack else ResourceValidationPolicy)(
            name=rule.name, description=rule.description, validate=rule.validate)
        for rule in RULES
    ],
)
