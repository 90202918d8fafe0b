"""Seed 003 (ZStack): POST /zstack/v1/ai/model-services adds a model service template, answered
{"inventory": {...}}; errors {"error": {"code", "description", "details", ...}} with a 4xx."""

from __future__ import annotations

from modelyard.server.deps import SessionDep, SettingsDep, UserDep
from modelyard.server.routers.compat.envelope import ZSTACK, compat_router, ok
from modelyard.server.schemas.seed.zstack import AddModelServiceRequest
from modelyard.server.services import templates as svc

router = compat_router(ZSTACK, tags=["seed §003 ZStack service templates"])


def template_input(req: AddModelServiceRequest) -> svc.TemplateInput:
    p = req.param
    unsupported = {k: getattr(p, k) for k in ("zoneUuid", "condaVersion", "containerCommand", "containerArgs",
                                               "vendorToSpecUuidsMap", "tagUuids")}
    unsupported.update(systemTags=req.systemTags, userTags=req.userTags)
    unsupported.update({f"param.{k}": v for k, v in (p.model_extra or {}).items()})
    unsupported.update({k: v for k, v in (req.model_extra or {}).items()})
    for i, img in enumerate(p.architectureImages or []):
        unsupported.update({f"architectureImages[{i}].{k}": v for k, v in (img.model_extra or {}).items()})
    return svc.TemplateInput(
        name=p.name, yaml=p.yaml, request_cpu=p.requestCpu, request_memory_mib=p.requestMemory,
        start_command=p.startCommand, description=p.description or "", install_path=p.installPath or "",
        gpu_compute_capability=p.gpuComputeCapability or "", python_version=p.pythonVersion or "",
        type=p.type or "Endpoint", framework=p.framework or "", source=p.source or "",
        model_center_uuid=p.modelCenterUuid or "", system=bool(p.system),
        support_distributed=bool(p.supportDistributed),
        architecture_images=[i.model_dump(exclude_none=True, exclude=set(i.model_extra or {}))
                             for i in p.architectureImages or []],
        model_ids=list(p.modelUuids or []), resource_uuid=p.resourceUuid or "", unsupported=unsupported)


@router.post("/zstack/v1/ai/model-services", summary="seed 003: add a model service (a service template)",
             description="Validates the YAML and every field against this platform (distro packages installed, a "
                         "node with the GPU compute capability, images you can see, the Python version, installPath "
                         "in your files) and starts preparing its Python environment. Answers the seed's "
                         "inventory; refusals are ZStack errors {error: {code, description, details}}.")
def add_model_service(req: AddModelServiceRequest, session: SessionDep, settings: SettingsDep, principal: UserDep):
    row = svc.create_template(session, settings, principal, template_input(req))
    return ok(ZSTACK, {"inventory": svc.inventory(row)})
