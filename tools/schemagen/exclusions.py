"""schema/exclusions.xml: every in-scope function that is not a method, by category, each with a reason."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Tuple

from lxml import etree

from virtq.schema.coverage import Category

from .api import flat_text
from .errors import GenerateError
from .paths import EXCLUSIONS_XML


@dataclass(frozen=True)
class Exclusion:
    function: str
    category: Category
    reason: str
    rule: str  # the function name or the pattern that matched


@dataclass
class Exclusions:
    categories: Dict[str, Category]
    rules: List[Tuple[str, bool, Category, str]]  # (name or pattern, is_pattern, category, reason)

    def match(self, function: str) -> Optional[Exclusion]:
        for rule, is_pattern, category, reason in self.rules:
            if (fnmatch.fnmatchcase(function, rule) if is_pattern else function == rule):
                return Exclusion(function, category, reason or category.reason, rule)
        return None

    def unused_rules(self, functions: Iterable[str]) -> List[str]:
        matches = (self.match(name) for name in functions)
        used = {m.rule for m in matches if m is not None}
        return [rule for rule, _, _, _ in self.rules if rule not in used]


def load_exclusions(path: Path = EXCLUSIONS_XML) -> Exclusions:
    root: Any = etree.parse(str(path)).getroot()
    categories: Dict[str, Category] = {}
    rules: List[Tuple[str, bool, Category, str]] = []
    for element in root:
        if not isinstance(element.tag, str):
            continue
        if element.tag == "category":
            name = element.get("name")
            categories[name] = Category(name, element.get("applicable") == "yes", element.get("title", name),
                                        flat_text(element.text))
        elif element.tag == "exclude":
            category = categories.get(element.get("category", ""))
            if category is None:
                raise GenerateError([f"exclusions.xml: unknown category {element.get('category')!r}"])
            if element.get("function"):
                rules.append((element.get("function"), False, category, flat_text(element.get("reason"))))
            elif element.get("pattern"):
                rules.append((element.get("pattern"), True, category, flat_text(element.get("reason"))))
            else:
                raise GenerateError(["exclusions.xml: <exclude> needs function= or pattern="])
        else:
            raise GenerateError([f"exclusions.xml: unexpected <{element.tag}>"])
    return Exclusions(categories, rules)
