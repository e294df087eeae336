"""The fake hypervisor's snapshots and checkpoints, kept as libvirt's test driver keeps them.

Each domain's snapshots (and, apart, its checkpoints) form a tree: a new one's parent is the current one
and it becomes current; deleting one hands its children to its parent unless they go with it. A domain has
snapshots or checkpoints, never both, and checkpoints only while it runs. Errors are the test driver's
codes and messages; ``HypervisorContract`` holds the fake and the real adapter to the same checks.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ElementTree
from typing import Any, Callable, Dict, List, Optional, Tuple, cast

from virtq.agent.hypervisor import CHILD_IDENTITIES, ChildIdentity, HypervisorError, split_child_key

__all__ = ["FakeChildren"]

OPERATION_FAILED, OPERATION_UNSUPPORTED, XML_DETAIL = 9, 84, 35
DELETE_CHILDREN, DELETE_CHILDREN_ONLY = 0x1, 0x4
"""virDomainSnapshotDeleteFlags and virDomainCheckpointDeleteFlags alike."""
KINDS: Dict[str, Tuple[str, str, int]] = {"DomainSnapshot": ("snapshot", "domainsnapshot", 72),
                                          "DomainCheckpoint": ("checkpoint", "domaincheckpoint", 103)}
"""class -> (libvirt's word for it, its XML's root element, VIR_ERR_NO_DOMAIN_SNAPSHOT/_CHECKPOINT)."""


class FakeChildren:
    """Snapshots and checkpoints by (class, domain uuid): name -> parent name, in creation order. The caller
    (the fake hypervisor) holds its lock around every call."""

    def __init__(self) -> None:
        self.trees: Dict[Tuple[str, str], Dict[str, Optional[str]]] = {}
        self.current: Dict[Tuple[str, str], Optional[str]] = {}

    def functions(self, running: Callable[[str], bool]) -> Dict[str, Tuple[str, int, int, Callable[..., Any]]]:
        """The libvirt functions of both families the fake answers: name -> (class, fewest and most arguments,
        what it does with the key and them); ``running`` tells whether a domain runs."""
        table: Dict[str, Tuple[str, int, int, Callable[..., Any]]] = {}
        for c in KINDS:
            word = c[len("Domain"):]
            table[f"virDomain{word}CreateXML"] = ("Domain", 1, 2, lambda key, xml, flags=0, c=c: self.create(
                c, key, xml, running(key)))
            table[f"virDomain{word}GetParent"] = (c, 0, 1, lambda key, flags=0, c=c: self.parent(c, key))
            table[f"virDomain{word}Delete"] = (c, 0, 1, lambda key, flags=0, c=c: self.delete(c, key, flags))
        return table

    def of(self, class_name: str, domain_uuid: str) -> List[ChildIdentity]:
        """The domain's snapshots or checkpoints; none for a domain the fake does not have (KeyError: no
        such class)."""
        return [_identity(class_name, domain_uuid, name) for name in self._tree(class_name, domain_uuid)]

    def _tree(self, class_name: str, domain_uuid: str) -> Dict[str, Optional[str]]:
        CHILD_IDENTITIES[class_name]  # KeyError for a class that is neither
        return self.trees.get((class_name, domain_uuid), {})

    def count(self, class_name: str, domain_uuid: str) -> int:
        return len(self._tree(class_name, domain_uuid))

    def find(self, class_name: str, key: str) -> Optional[ChildIdentity]:
        domain_uuid, name = split_child_key(key)
        return next((c for c in self.of(class_name, domain_uuid) if c.name == name), None)

    def create(self, class_name: str, domain_uuid: str, xml: str, running: bool) -> ChildIdentity:
        word, root_tag, _ = KINDS[class_name]
        other = next(c for c in KINDS if c != class_name)
        if class_name == "DomainCheckpoint" and not running:
            raise HypervisorError(OPERATION_UNSUPPORTED, "Operation not supported: cannot create checkpoint for "
                                                         "inactive domain")
        if self.count(other, domain_uuid):
            raise HypervisorError(OPERATION_UNSUPPORTED, f"Operation not supported: cannot create {word} while "
                                                         f"{KINDS[other][0]} exists")
        try:
            name = ElementTree.fromstring(xml).findtext("name") or str(int(time.time()))
        except ElementTree.ParseError as exc:
            raise HypervisorError(XML_DETAIL, f"({root_tag}):1: {exc}") from exc
        tree = self.trees.setdefault((class_name, domain_uuid), {})
        if name in tree:
            raise HypervisorError(OPERATION_FAILED, f"operation failed: domain moment {name} already exists")
        tree[name] = self.current.get((class_name, domain_uuid))
        self.current[(class_name, domain_uuid)] = name
        return _identity(class_name, domain_uuid, name)

    def parent(self, class_name: str, key: str) -> ChildIdentity:
        domain_uuid, name = split_child_key(key)
        parent = self.trees[(class_name, domain_uuid)][name]
        if parent is None:
            word, _, code = KINDS[class_name]
            raise HypervisorError(code, f"Domain {word} not found: {word} '{name}' does not have a parent")
        return _identity(class_name, domain_uuid, parent)

    def delete(self, class_name: str, key: str, flags: int) -> int:
        """The one named (unless CHILDREN_ONLY) and, with CHILDREN or CHILDREN_ONLY, all its descendants;
        otherwise its children move up to its parent."""
        domain_uuid, name = split_child_key(key)
        tree = self.trees[(class_name, domain_uuid)]
        parent = tree[name]
        gone = self._descendants(tree, name) if flags & (DELETE_CHILDREN | DELETE_CHILDREN_ONLY) else []
        if not flags & DELETE_CHILDREN_ONLY:
            gone.append(name)
        for child, its_parent in list(tree.items()):
            if its_parent == name and child not in gone:
                tree[child] = parent
        for removed in gone:
            del tree[removed]
        if self.current.get((class_name, domain_uuid)) in gone:
            self.current[(class_name, domain_uuid)] = parent if parent in tree else None
        return 0

    @staticmethod
    def _descendants(tree: Dict[str, Optional[str]], name: str) -> List[str]:
        children = [child for child, parent in tree.items() if parent == name]
        return children + [d for child in children for d in FakeChildren._descendants(tree, child)]

    @staticmethod
    def not_found(class_name: str, key: str) -> HypervisorError:
        word, _, code = KINDS[class_name]
        return HypervisorError(code, f"Domain {word} not found: no domain {word} with matching name "
                                     f"'{split_child_key(key)[1]}'")

    def drop(self, domain_uuid: str) -> None:
        """Forget a domain that is gone."""
        for class_name in KINDS:
            self.trees.pop((class_name, domain_uuid), None)
            self.current.pop((class_name, domain_uuid), None)


def _identity(class_name: str, domain_uuid: str, name: str) -> ChildIdentity:
    return cast(ChildIdentity, CHILD_IDENTITIES[class_name](domain_uuid, name))
