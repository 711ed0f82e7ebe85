"""The retention targets every app declares (shared.declarations.RetentionTarget), by key."""

from shared.declarations import RetentionTarget, declared_retention_targets


def retention_targets() -> dict[str, RetentionTarget]:
    return {target.key: target for target in declared_retention_targets()}


def unknown_targets(keys) -> list[str]:
    known = retention_targets()
    return [key for key in keys if key not in known]
