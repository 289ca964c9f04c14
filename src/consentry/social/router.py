"""HTTP routes of the reference platform: accounts (admin) and the platform API under ``/v1/platform``.

``router`` is what the application mounts; it includes ``platform_router``. Routes only translate HTTP
into service calls (``consentry.social.service``), which hold every rule.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from consentry.api_deps import (
    AdminDep,
    DatabaseDep,
    bearer_token,
    database_call,
    model_response,
    verified_principal_async,
)
from consentry.auth.service import Principal
from consentry.config import Settings
from consentry.consent.deps import AccountDep
from consentry.consent.service import allowed_accounts
from consentry.errors import Conflict, Gone, NotFound, Unauthenticated
from consentry.ids import Id64
from consentry.metering.attribution import KEY_PREFIX as ORGANISATION_KEY_PREFIX
from consentry.metering.middleware import report_posts
from consentry.openapi import raises
from consentry.signals.headers import current_signal_headers
from consentry.social import service
from consentry.social.schemas import (
    AccountIn,
    AccountOut,
    ActionOut,
    ChatIn,
    ChatOut,
    FollowRequestOut,
    InteractionOut,
    PostIn,
    PostOut,
    PostPage,
    ProfileOut,
)

router = APIRouter(tags=["accounts"])
platform_router = APIRouter(prefix="/v1/platform", tags=["platform"])


# --- accounts (admin) -------------------------------------------------------------------------------


@router.post("/v1/accounts", status_code=201)
@raises(Conflict)
def create_account(body: AccountIn, principal: AdminDep, database: DatabaseDep) -> AccountOut:
    """Create an account (admin)."""
    with database.write() as session:
        account = service.create_account(
            session,
            handle=body.handle,
            country=body.country,
            birth_year=body.birth_year,
            protected=body.protected,
        )
        return AccountOut.model_validate(account)


@router.get("/v1/accounts/{account_id}")
def show_account(account_id: Id64, principal: AdminDep, database: DatabaseDep) -> AccountOut:
    """One account (admin)."""
    with database.read() as session:
        return AccountOut.model_validate(service.get_account(session, account_id))


@router.post("/v1/accounts/{account_id}/deactivate")
@raises(Conflict)
def deactivate_account(account_id: Id64, principal: AdminDep, database: DatabaseDep) -> AccountOut:
    """Deactivate an account (admin)."""
    with database.write() as session:
        return AccountOut.model_validate(service.deactivate_account(session, account_id=account_id))


@router.post("/v1/accounts/{account_id}/reactivate")
@raises(Conflict)
def reactivate_account(account_id: Id64, principal: AdminDep, database: DatabaseDep) -> AccountOut:
    """Reactivate a deactivated account (admin)."""
    with database.write() as session:
        return AccountOut.model_validate(service.reactivate_account(session, account_id=account_id))


@router.delete("/v1/accounts/{account_id}")
@raises(Conflict)
def delete_account(account_id: Id64, principal: AdminDep, database: DatabaseDep) -> AccountOut:
    """Delete an account (admin): its ledger events become anonymous, the chain still verifies."""
    with database.write() as session:
        return AccountOut.model_validate(service.delete_account(session, account_id=account_id))


# --- platform: who is reading, and the block switch ------------------------------------------------


@raises(Unauthenticated)
async def optional_viewer(request: Request, database: DatabaseDep) -> int | None:
    """The reading account: ``None`` without a token, with an admin token or with an organisation key
    (which names a reader for the meter, never an account); 401 for a bad token."""
    token = bearer_token(request)
    if not token or token.startswith(ORGANISATION_KEY_PREFIX):
        return None
    principal: Principal = await verified_principal_async(request, database, token)
    return principal.account_id if principal.kind == "account" else None


async def blocked_can_read(request: Request) -> bool:
    """Whether blocked accounts may read the blocker's public posts: the ``blocked_can_read`` setting."""
    settings: Settings = request.app.state.settings
    return settings.blocked_can_read


REALTIME_SETTING = "assistant_realtime"
"""The setting an author's posts need for the assistant to quote them in real time."""

ViewerDep = Annotated[int | None, Depends(optional_viewer)]
BlockedCanReadDep = Annotated[bool, Depends(blocked_can_read)]


def _me(principal: Principal) -> int:
    assert principal.account_id is not None  # AccountDep guarantees it
    return principal.account_id


# --- posts ------------------------------------------------------------------------------------------


@platform_router.post("/posts", status_code=201)
@raises(NotFound, Gone)
def create_post(body: PostIn, principal: AccountDep, database: DatabaseDep) -> PostOut:
    """Publish a post, a reply (``reply_to``) or a quote (``quote_of``)."""
    with database.write() as session:
        post = service.create_post(
            session,
            author_id=_me(principal),
            text=body.text,
            visibility=body.visibility,
            media=body.media,
            reply_to=body.reply_to,
            quote_of=body.quote_of,
        )
        return PostOut.of(service.post_views(session, [post])[0])


@platform_router.get("/posts/{post_id}", response_model=PostOut)
@raises(Gone)
async def read_post(
    request: Request, post_id: Id64, viewer: ViewerDep, can_read: BlockedCanReadDep, database: DatabaseDep
) -> Response:
    """One post (anonymous readers see public posts of unprotected accounts); 410 once deleted.

    The response carries its author's AI-use signals (``Content-Usage``, ``X-Robots-Tag``) and counts
    one post served for the scraping meter.
    """
    ctx = request.app.state.consent

    def read() -> Response:
        with database.read() as session:
            view = service.get_post(session, post_id=post_id, viewer_id=viewer, blocked_can_read=can_read)
            body = PostOut.of(view)
        # after the session's connection went back: a refresh of the consent state takes connections
        # of its own, and waiting for them while holding one can exhaust the pool
        headers = current_signal_headers(database, author_id=body.author_id, ctx=ctx)
        return model_response(body, headers=headers)

    response = await database_call(database, read)
    report_posts(request, 1)
    return response


@platform_router.delete("/posts/{post_id}", status_code=204)
@raises(Gone)
def delete_post(post_id: Id64, principal: AccountDep, database: DatabaseDep) -> None:
    """Delete one of your posts; reading it answers 410 from then on."""
    with database.write() as session:
        service.delete_post(session, account_id=_me(principal), post_id=post_id)


@platform_router.post("/posts/{post_id}/like")
@raises(Gone)
def like(post_id: Id64, principal: AccountDep, database: DatabaseDep) -> ActionOut:
    """Like a post."""
    with database.write() as session:
        changed = service.like_post(session, account_id=_me(principal), post_id=post_id)
    return ActionOut(account_id=_me(principal), target_id=post_id, state="liked", changed=changed)


@platform_router.delete("/posts/{post_id}/like")
@raises(Gone)
def unlike(post_id: Id64, principal: AccountDep, database: DatabaseDep) -> ActionOut:
    """Withdraw a like."""
    with database.write() as session:
        changed = service.unlike_post(session, account_id=_me(principal), post_id=post_id)
    return ActionOut(account_id=_me(principal), target_id=post_id, state="not_liked", changed=changed)


@platform_router.post("/posts/{post_id}/repost")
@raises(Gone)
def repost(post_id: Id64, principal: AccountDep, database: DatabaseDep) -> ActionOut:
    """Repost a public post to your followers."""
    with database.write() as session:
        changed = service.repost_post(session, account_id=_me(principal), post_id=post_id)
    return ActionOut(account_id=_me(principal), target_id=post_id, state="reposted", changed=changed)


@platform_router.delete("/posts/{post_id}/repost")
@raises(Gone)
def unrepost(post_id: Id64, principal: AccountDep, database: DatabaseDep) -> ActionOut:
    """Withdraw a repost."""
    with database.write() as session:
        changed = service.unrepost_post(session, account_id=_me(principal), post_id=post_id)
    return ActionOut(account_id=_me(principal), target_id=post_id, state="not_reposted", changed=changed)


# --- accounts ---------------------------------------------------------------------------------------


@platform_router.get("/accounts/{account_id}")
@raises(Gone)
def profile(account_id: Id64, database: DatabaseDep) -> ProfileOut:
    """An account's public profile; 410 once deleted."""
    with database.read() as session:
        return ProfileOut.model_validate(service.visible_account(session, account_id))


@platform_router.get("/accounts/{account_id}/posts", response_model=PostPage)
@raises(Gone)
async def account_posts(
    request: Request,
    account_id: Id64,
    viewer: ViewerDep,
    can_read: BlockedCanReadDep,
    database: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=service.PAGE_LIMIT)] = 20,
    before: Annotated[Id64 | None, Query(description="only posts with a smaller id")] = None,
) -> Response:
    """An account's live posts that you may read, newest first (with the author's AI-use signals)."""
    ctx = request.app.state.consent

    def read() -> tuple[Response, int]:
        with database.read() as session:
            page = service.account_posts(
                session,
                account_id=account_id,
                viewer_id=viewer,
                blocked_can_read=can_read,
                limit=limit,
                before=before,
            )
            body = PostPage(
                account=ProfileOut.model_validate(page.account),
                posts=[PostOut.of(view) for view in page.posts],
                complete=page.complete,
                next_before=page.next_before,
            )
        headers = current_signal_headers(database, author_id=account_id, ctx=ctx)  # as in read_post
        return model_response(body, headers=headers), len(body.posts)

    response, served = await database_call(database, read)
    report_posts(request, served)
    return response


@platform_router.post("/accounts/{account_id}/follow")
@raises(Gone)
def follow(account_id: Id64, principal: AccountDep, database: DatabaseDep) -> ActionOut:
    """Follow an account; for a protected account this asks, and it must approve."""
    me = _me(principal)
    with database.write() as session:
        row, changed = service.follow(session, follower_id=me, followee_id=account_id)
        state = "requested" if row.pending else "following"
    return ActionOut(account_id=me, target_id=account_id, state=state, changed=changed)


@platform_router.delete("/accounts/{account_id}/follow")
@raises(Gone)
def unfollow(account_id: Id64, principal: AccountDep, database: DatabaseDep) -> ActionOut:
    """Stop following an account (or withdraw a request)."""
    me = _me(principal)
    with database.write() as session:
        changed = service.unfollow(session, follower_id=me, followee_id=account_id)
    return ActionOut(account_id=me, target_id=account_id, state="not_following", changed=changed)


@platform_router.post("/accounts/{account_id}/block")
@raises(Gone)
def block(account_id: Id64, principal: AccountDep, database: DatabaseDep) -> ActionOut:
    """Block an account: follows between you end, and it can no longer interact with you."""
    me = _me(principal)
    with database.write() as session:
        changed = service.block(session, blocker_id=me, blocked_id=account_id)
    return ActionOut(account_id=me, target_id=account_id, state="blocking", changed=changed)


@platform_router.delete("/accounts/{account_id}/block")
@raises(Gone)
def unblock(account_id: Id64, principal: AccountDep, database: DatabaseDep) -> ActionOut:
    """Lift a block."""
    me = _me(principal)
    with database.write() as session:
        changed = service.unblock(session, blocker_id=me, blocked_id=account_id)
    return ActionOut(account_id=me, target_id=account_id, state="not_blocking", changed=changed)


@platform_router.get("/me/follow-requests")
def follow_requests(principal: AccountDep, database: DatabaseDep) -> list[FollowRequestOut]:
    """Pending requests to follow you (a protected account), oldest first."""
    with database.read() as session:
        rows = service.follow_requests(session, account_id=_me(principal))
        return [
            FollowRequestOut(follower_id=row.follower_id, handle=handle, requested_at=row.created_at)
            for row, handle in rows
        ]


@platform_router.post("/me/follow-requests/{follower_id}")
def approve_follower(follower_id: Id64, principal: AccountDep, database: DatabaseDep) -> ActionOut:
    """Approve a follow request: the account now sees your followers-only posts."""
    me = _me(principal)
    with database.write() as session:
        service.approve_follower(session, account_id=me, follower_id=follower_id)
    return ActionOut(account_id=follower_id, target_id=me, state="following", changed=True)


@platform_router.delete("/me/follow-requests/{follower_id}")
def decline_follower(follower_id: Id64, principal: AccountDep, database: DatabaseDep) -> ActionOut:
    """Decline a follow request."""
    me = _me(principal)
    with database.write() as session:
        service.decline_follower(session, account_id=me, follower_id=follower_id)
    return ActionOut(account_id=follower_id, target_id=me, state="declined", changed=True)


# --- assistant --------------------------------------------------------------------------------------


@platform_router.post("/assistant/chat", status_code=201)
def chat(request: Request, body: ChatIn, principal: AccountDep, database: DatabaseDep) -> ChatOut:
    """Ask the assistant; the prompt and its answer are recorded as an assistant interaction. Its sources
    are only posts whose authors allow ``assistant_realtime``."""
    ctx = request.app.state.consent
    with database.write() as session:

        def allowed(author_ids: Sequence[int]) -> set[int]:
            return allowed_accounts(session, account_ids=author_ids, setting=REALTIME_SETTING, ctx=ctx)

        result = service.chat(session, account_id=_me(principal), prompt=body.prompt, allowed=allowed)
        row = result.interaction
        return ChatOut(
            id=row.id,
            account_id=row.account_id,
            created_at=row.created_at,
            prompt=row.prompt,
            response=row.response,
            source_post_ids=[post.id for post in result.sources],
        )


@platform_router.get("/assistant/interactions")
def list_interactions(
    principal: AccountDep,
    database: DatabaseDep,
    limit: Annotated[int, Query(ge=1, le=service.PAGE_LIMIT)] = 20,
    before: Annotated[Id64 | None, Query(description="only interactions with a smaller id")] = None,
) -> list[InteractionOut]:
    """Your exchanges with the assistant, newest first."""
    with database.read() as session:
        rows = service.interactions(session, account_id=_me(principal), limit=limit, before=before)
        return [InteractionOut.model_validate(row) for row in rows]


@platform_router.delete("/assistant/interactions/{interaction_id}", status_code=204)
@raises(Gone)
def delete_interaction(interaction_id: Id64, principal: AccountDep, database: DatabaseDep) -> None:
    """Delete one of your exchanges with the assistant."""
    with database.write() as session:
        service.delete_interaction(session, account_id=_me(principal), interaction_id=interaction_id)


router.include_router(platform_router)
