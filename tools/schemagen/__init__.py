"""Generate the schema's methods from libvirt's own API description: a build tool, run from the source tree.

``python -m tools.schemagen`` reads

* ``libvirt-api.xml`` (from libvirt-dev: every public C function with its typed arguments),
* the libvirt-python binding (which C functions it wraps, on which class, with which Python
  parameters: the agent calls the binding positionally, so the binding decides the inputs),
* ``schema/overrides.xml`` (hand-written shaping for functions whose C signature needs it:
  out-structures, typed parameters, returned lists …),
* ``schema/exclusions.xml`` (every in-scope function that is not exposed, with a reason),
* ``schema/base.xml`` (everything that is not generated: package, classes, properties,
  statistics, events),
* ``schema/libvirt-remote-acl.tsv`` (libvirt's own permissions per RPC procedure, from the @acl
  annotations of its remote_protocol.x, 2014) and ``schema/permissions.xml`` (hand-written, with
  reasons: the permissions of the methods that table does not cover),

and writes ``schema/org.libvirt.xml`` (base.xml with the generated methods added to its classes),
``schema/coverage.json`` (every function of the in-scope families accounted for: what
``virtq schema coverage`` prints), the generated part of docs/SCHEMA.md, ``schema/enums.py``
(``DomainState``, ``PoolState``, ``VolumeType``: libvirt's constants as IntEnums) and
``console/typed.pyi`` (the snapshots' methods, arguments and results as Protocols, for mypy). The outputs are
deterministic; tests regenerate them and fail on drift. The naming rule, the type mapping and the
exclusions are documented in docs/SCHEMA.md.

One module a job: ``api`` (libvirt-api.xml), ``classes`` (the six classes, the naming rule),
``exclusions``, ``overrides`` and ``permissions`` (the hand-written inputs and libvirt's ACL table),
``typemap`` (C types), ``methods`` (the generation), ``schemaxml`` (writing org.libvirt.xml),
``accounting`` (coverage), ``docs`` (docs/SCHEMA.md), ``constants`` (schema/constants.json: every
libvirt enum constant by name, for the CLI's ``flags=VIR_…``), ``enums`` (schema/enums.py), ``stubs``
(console/typed.pyi), ``command`` (the command line). The runtime
package never imports this one.
"""

from .accounting import coverage
from .api import Api, CArg, CFunction, load_api
from .classes import CLASSES, ClassInfo, family_class, method_name
from .command import main
from .docs import DOCS_BEGIN, DOCS_END, docs_block, render_docs
from .enums import ENUMS, render_enums
from .errors import GenerateError
from .exclusions import Exclusion, Exclusions, load_exclusions
from .methods import generate
from .model import GenArg, GenMethod, Generated
from .overrides import Override, load_overrides
from .paths import (ACL_TSV, API_XML, BASE_XML, COMMAND, COVERAGE_JSON, DOCS_MD, EXCLUSIONS_XML, OUTPUT_XML,
                    OVERRIDES_XML, PERMISSIONS_XML)
from .permissions import AclRow, PermissionRule, load_acl_table, load_permission_rules, parse_acl
from .schemaxml import build, render, render_method
from .stubs import render_stub

__all__ = [
    "ACL_TSV", "API_XML", "AclRow", "Api", "BASE_XML", "CArg", "CFunction", "CLASSES", "COMMAND", "COVERAGE_JSON",
    "ClassInfo", "DOCS_BEGIN", "DOCS_END", "DOCS_MD", "ENUMS", "EXCLUSIONS_XML", "Exclusion", "Exclusions", "GenArg",
    "GenMethod", "GenerateError", "Generated", "OUTPUT_XML", "OVERRIDES_XML", "Override", "PERMISSIONS_XML",
    "PermissionRule", "build", "coverage", "docs_block", "family_class", "generate", "load_acl_table", "load_api",
    "load_exclusions", "load_overrides", "load_permission_rules", "main", "method_name", "parse_acl", "render",
    "render_docs", "render_enums", "render_method", "render_stub",
]
