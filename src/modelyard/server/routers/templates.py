"""Native service templates (/api/v1/templates): create, list, show (with its environment's
status), delete. The seed's own path is routers/compat/zstack.py."""

from __future__ import annotations

from fastapi import APIRouter, status

from modelyard.server.deps import SessionDep, SettingsDep, UserDep
from modelyard.server.routers.params import PageQ, PageSizeQ
from modelyard.server.schemas.templates import TemplateCreateRequest
from modelyard.server.services import templates as svc

router = APIRouter(tags=["templates"])


@router.post("/templates", status_code=status.HTTP_201_CREATED)
def create_template(req: TemplateCreateRequest, session: SessionDep, settings: SettingsDep, principal: UserDep):
    """Validate and store a template; its Python environment starts preparing (see `environment`)."""
    inp = svc.TemplateInput(
        name=req.name, yaml=req.yaml, request_cpu=req.request_cpu, request_memory_mib=req.request_memory_mib,
        start_command=req.start_command, description=req.description, install_path=req.install_path,
        gpu_compute_capability=req.gpu_compute_capability, python_version=req.python_version, type=req.type,
        framework=req.framework, source=req.source, system=req.public, model_ids=req.model_ids,
        architecture_images=[{"cpuArchitecture": i.arch, "dockerImage": i.image} for i in req.images])
    row = svc.create_template(session, settings, principal, inp)
    return svc.template_view(settings, row)


@router.get("/templates")
def list_templates(session: SessionDep, settings: SettingsDep, principal: UserDep, page: PageQ = 1,
                   page_size: PageSizeQ = 20):
    """Your service templates and the system ones, newest first, with their environments' state."""
    items, total = svc.list_templates(session, principal, page=page, page_size=page_size)
    return {"items": [svc.template_view(settings, t) for t in items], "total": total, "page": page,
            "page_size": page_size}


@router.get("/templates/{template}")
def show_template(template: str, session: SessionDep, settings: SettingsDep, principal: UserDep):
    """One template by id, id prefix or name: its parsed YAML, resources and environment status."""
    return svc.template_view(settings, svc.get_template(session, principal, template))


@router.delete("/templates/{template}", status_code=status.HTTP_204_NO_CONTENT)
def delete_template(template: str, session: SessionDep, principal: UserDep):
    """Delete one of your templates (a system template: admins only)."""
    svc.delete_template(session, principal, template)
