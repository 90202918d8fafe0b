"""Native hyperparameter search API (/api/v1/searches)."""

from __future__ import annotations

from fastapi import APIRouter, status

from modelyard.server.deps import CtxDep, SessionDep, UserDep
from modelyard.server.routers.params import ListQ, PageQ, PageSizeQ
from modelyard.server.schemas.common import Page
from modelyard.server.schemas.searches import SearchCreate, SearchDetail, SearchResponse
from modelyard.server.services import searches as svc

router = APIRouter(tags=["searches"])


@router.post("/searches", status_code=status.HTTP_201_CREATED, response_model=SearchDetail,
             summary="Start a hyperparameter search (its first trials are submitted at once)")
def create(req: SearchCreate, session: SessionDep, ctx: CtxDep, principal: UserDep):
    """Validates the base job, the space and the objective (which the trials must be able to report), then submits the first trials."""
    search = svc.create_search(session, ctx, principal=principal, req=req)
    session.flush()
    return svc.detail(session, search)


@router.get("/searches", response_model=Page[SearchResponse])
def list_searches(session: SessionDep, principal: UserDep, state: ListQ = None, page: PageQ = 1,
                  page_size: PageSizeQ = 20):
    """List searches

    Your hyperparameter searches, newest first, with trial counts; filter by state."""
    states = [s.strip() for s in state.split(",") if s.strip()] if state else None
    items, total = svc.list_searches(session, principal, states=states, page=page, page_size=page_size)
    counts = svc.trial_counts(session, [s.id for s in items])
    return Page(items=[SearchResponse(**svc.summary(s, counts.get(s.id))) for s in items], total=total,
                page=page, page_size=page_size)


@router.get("/searches/algorithms", summary="The search algorithms and their parameters (seed 002 listing)")
def algorithms(principal: UserDep):
    """Every algorithm (random, grid, tpe, bayes_opt, anneal) with its parameters and defaults."""
    return svc.algorithms()


@router.get("/searches/{search_id}", response_model=SearchDetail)
def get_search(search_id: str, session: SessionDep, principal: UserDep):
    """One search

    Addressed by id, unique id prefix or name (your newest of that name); every trial with its parameters and value."""
    return svc.detail(session, svc.get_search(session, principal, search_id))


@router.delete("/searches/{search_id}", status_code=status.HTTP_204_NO_CONTENT, summary="Delete a finished search",
               description="Removes the search and its trial rows; the trials' jobs stay (delete each with "
                           "DELETE /api/v1/jobs/{ref}). A running search is refused (409 search_running): cancel it "
                           "first.")
def delete(search_id: str, session: SessionDep, ctx: CtxDep, principal: UserDep):
    svc.delete_search(session, ctx, principal=principal, search_ref=search_id)


@router.post("/searches/{search_id}/cancel", response_model=SearchDetail,
             summary="Cancel the search and its unfinished trials' jobs")
def cancel(search_id: str, session: SessionDep, ctx: CtxDep, principal: UserDep):
    """Stops the search: running trials' jobs are cancelled, no new trial starts."""
    search = svc.cancel_search(session, ctx, principal=principal, search_id=search_id)
    session.flush()
    return svc.detail(session, search)
