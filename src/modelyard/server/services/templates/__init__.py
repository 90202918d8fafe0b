"""Service templates (seed 003 ZStack model services): YAML parsing and validation, storage, the
seed's inventory, and the planner the serving service calls for a template replica."""

from modelyard.server.services.templates.plan import image_for_arch, plan_template
from modelyard.server.services.templates.service import (
    TYPES,
    UNSUPPORTED_REASONS,
    TemplateInput,
    create_template,
    delete_template,
    get_template,
    inventory,
    list_templates,
    missing_distro_packages,
    nodes_with_capability,
    template_env_spec,
    template_env_status,
    template_view,
)
from modelyard.server.services.templates.spec import (
    TemplateError,
    parse_requirements_txt,
    parse_template_yaml,
)

__all__ = [
    "TYPES",
    "UNSUPPORTED_REASONS",
    "TemplateError",
    "TemplateInput",
    "create_template",
    "delete_template",
    "get_template",
    "image_for_arch",
    "inventory",
    "list_templates",
    "missing_distro_packages",
    "nodes_with_capability",
    "parse_requirements_txt",
    "parse_template_yaml",
    "plan_template",
    "template_env_spec",
    "template_env_status",
    "template_view",
]
