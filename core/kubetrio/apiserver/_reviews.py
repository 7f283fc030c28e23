"""The review resources: questions to the server, answered at once and never stored.

``kubectl auth can-i`` posts a SelfSubjectAccessReview, ``kubectl auth whoami`` a
SelfSubjectReview; webhooks and tools post SubjectAccessReviews and TokenReviews. Each
answer is the request echoed back with a ``status`` filled in by the same authenticate
and authorize hooks that guard every request.
"""

from __future__ import annotations

from collections.abc import Callable

from kubetrio.kubeobject import KubeObject
from kubetrio.providers import AuthorizationAttributes, AuthorizationDecision, AuthRequest, UserInfo

Authorize = Callable[[UserInfo, AuthorizationAttributes], AuthorizationDecision]
Authenticate = Callable[[AuthRequest], UserInfo | None]
RulesFor = Callable[[UserInfo, str], KubeObject | None]

REVIEWS = {
    ("authorization.k8s.io", "selfsubjectaccessreviews"),
    ("authorization.k8s.io", "subjectaccessreviews"),
    ("authorization.k8s.io", "localsubjectaccessreviews"),
    ("authorization.k8s.io", "selfsubjectrulesreviews"),
    ("authentication.k8s.io", "selfsubjectreviews"),
    ("authentication.k8s.io", "tokenreviews"),
}


def _attributes(spec: KubeObject, namespace: str = "") -> AuthorizationAttributes:
    resource = spec.get("resourceAttributes")
    if isinstance(resource, dict):
        return AuthorizationAttributes(
            verb=str(resource.get("verb", "")),
            api_group=str(resource.get("group", "")),
            api_version=str(resource.get("version", "")),
            resource=str(resource.get("resource", "")),
            subresource=str(resource.get("subresource", "")),
            namespace=namespace or str(resource.get("namespace", "")),
            name=str(resource.get("name", "")),
        )
    non_resource = spec.get("nonResourceAttributes") or {}
    return AuthorizationAttributes(
        verb=str(non_resource.get("verb", "")), path=str(non_resource.get("path", ""))
    )


def _user_info(user: UserInfo) -> KubeObject:
    info: KubeObject = {"username": user.name}
    if user.uid:
        info["uid"] = user.uid
    if user.groups:
        info["groups"] = list(user.groups)
    if user.extra:
        info["extra"] = {k: list(v) for k, v in user.extra.items()}
    return info


def answer_review(
    resource: str,
    review: KubeObject,
    *,
    user: UserInfo,
    namespace: str,
    authorize: Authorize,
    authenticate: Authenticate,
    rules_for: RulesFor = lambda user, namespace: None,
) -> KubeObject:
    """The review with its ``status`` filled in."""
    spec = review.get("spec") or {}
    if resource in (
        "selfsubjectaccessreviews",
        "subjectaccessreviews",
        "localsubjectaccessreviews",
    ):
        subject = user
        if resource != "selfsubjectaccessreviews":
            subject = UserInfo(
                name=str(spec.get("user", "")),
                uid=str(spec.get("uid", "")),
                groups=tuple(spec.get("groups") or ()),
            )
        decision = authorize(subject, _attributes(spec, namespace))
        status: KubeObject = {"allowed": decision.allowed}
        if decision.reason:
            status["reason"] = decision.reason
        if not decision.allowed and decision.reason:
            status["denied"] = True
        review["status"] = status
    elif resource == "selfsubjectrulesreviews":
        rules = rules_for(user, namespace or str(spec.get("namespace", "")))
        review["status"] = rules or {
            "resourceRules": [],
            "nonResourceRules": [],
            "incomplete": True,
            "evaluationError": "rule listing is not supported by the configured authorizers",
        }
    elif resource == "selfsubjectreviews":
        review["status"] = {"userInfo": _user_info(user)}
    elif resource == "tokenreviews":
        token = str(spec.get("token", ""))
        reviewed = authenticate(AuthRequest(headers={"authorization": f"Bearer {token}"}))
        review["status"] = (
            {"authenticated": True, "user": _user_info(reviewed)}
            if reviewed is not None
            else {"authenticated": False, "error": "the token is not valid"}
        )
    review.setdefault("metadata", {})
    return review
