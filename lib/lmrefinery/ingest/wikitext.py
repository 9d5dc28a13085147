"""Wikitext -> plain text: templates, references, tables, files and categories
removed, links rendered as their text (mwparserfromhell), with the namespace names
of the dump's ``<siteinfo>`` (``SiteInfo``) telling file and category links apart in
any language. ingest/wiki.py streams the dump and calls ``wikitext_to_text``."""
from __future__ import annotations

import re
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from functools import cached_property

DISAMBIG_TEMPLATES = {
    # en
    "disambiguation", "disambig", "dab", "disamb", "dbig", "hndis", "geodis", "set index article",
    "disambiguation page", "numberdis", "letter disambiguation", "hospitaldis", "schooldis", "shipindex",
    "mathdab", "roaddis", "species latin name disambiguation", "taxonomy disambiguation",
    # ja
    "aimai", "曖昧さ回避", "人名の曖昧さ回避", "地名の曖昧さ回避", "兵庫県の曖昧さ回避",
    # zh
    "消歧义", "消歧義", "消歧義頁", "消歧义页",
    # de / fr / es / ru
    "begriffsklärung", "homonymie", "desambiguación", "неоднозначность", "значения",
}
# used when a dump has no <siteinfo> (or in addition to it): the canonical names,
# which every wiki accepts, and a few local ones
FILE_PREFIXES = ("file", "image", "media", "ファイル", "画像", "文件", "檔案", "图像", "圖像", "datei", "fichier",
                 "archivo", "файл", "bild")
CATEGORY_PREFIXES = ("category", "カテゴリ", "分类", "分類", "kategorie", "catégorie", "categoría", "категория")
_INTERLANG = re.compile(r"^:?[a-z]{2,3}(-[a-z]{2,8})*(-[a-z0-9]+)?$")

FILE_NS, CATEGORY_NS = 6, 14


def _ns_name(name: str) -> str:
    """Namespace names compare case-insensitively, with '_' and ' ' equal."""
    return re.sub(r"[\s_]+", " ", name).strip().lower()


@dataclass(frozen=True)
class SiteInfo:
    """What a dump's ``<siteinfo>`` says about its namespaces: every local name and
    alias (lower-cased) -> namespace number, plus the canonical names."""
    namespaces: dict[str, int] = dataclass_field(default_factory=dict)

    def prefixes(self, key: int) -> frozenset[str]:
        return frozenset(n for n, k in self.namespaces.items() if k == key)

    @cached_property
    def file_prefixes(self) -> frozenset[str]:
        return self.prefixes(FILE_NS) | {_ns_name(p) for p in FILE_PREFIXES}

    @cached_property
    def category_prefixes(self) -> frozenset[str]:
        return self.prefixes(CATEGORY_NS) | {_ns_name(p) for p in CATEGORY_PREFIXES}

    def namespace_of(self, title: str) -> int:
        pre = title.split(":", 1)[0] if ":" in title else ""
        return self.namespaces.get(_ns_name(pre), 0) if pre else 0


_CANONICAL_NS = {"media": -2, "special": -1, "talk": 1, "user": 2, "user talk": 3, "project": 4,
                 "project talk": 5, "file": 6, "image": 6, "file talk": 7, "image talk": 7, "mediawiki": 8,
                 "mediawiki talk": 9, "template": 10, "template talk": 11, "help": 12, "help talk": 13,
                 "category": 14, "category talk": 15}
_NS_ENTRY = re.compile(r'<namespace\s+key="(-?\d+)"[^>]*?>([^<]*)</namespace>')
_NS_ALIAS = re.compile(r'<(namespacealias|alias|ns)\s+(?:key|id)="(-?\d+)"[^>]*?>([^<]*)</\1>')


def parse_siteinfo(head: str) -> SiteInfo:
    """Namespace names from ``<siteinfo>``: ``<namespace key=..>`` entries (the local
    names), aliases (``<namespacealiases><ns id=..>`` as the API's siteinfo writes them,
    or ``<namespacealias key=..>``), and the canonical English names every wiki accepts."""
    m = re.search(r"<siteinfo>(.*?)</siteinfo>", head, re.S)
    names = dict(_CANONICAL_NS)
    if m:
        info = m.group(1)
        for key, name in _NS_ENTRY.findall(info):
            if name.strip():
                names[_ns_name(name)] = int(key)
        for _, key, name in _NS_ALIAS.findall(info):
            if name.strip():
                names[_ns_name(name)] = int(key)
    return SiteInfo(names)


DEFAULT_SITE = SiteInfo(dict(_CANONICAL_NS))


# ------------------------------------------------------------ wikitext -> text
_DROP_TAGS = {"ref", "references", "table", "gallery", "math", "score", "timeline", "imagemap", "syntaxhighlight",
              "source", "templatedata", "noinclude", "graph", "mapframe", "chem", "ce", "hiero", "categorytree",
              "inputbox", "templatestyles", "style", "script"}


_STYLE = re.compile(r"'{2,5}")
_BRACES = re.compile(r"\{\{|\}\}")


def strip_templates(text: str) -> str:
    """Drop every balanced ``{{...}}`` (nested too) before parsing: templates are
    most of an article's markup and none of its text; parsing them is the
    expensive part of mwparserfromhell. Unbalanced braces are left to the parser."""
    out, depth, last, start = [], 0, 0, 0
    for m in _BRACES.finditer(text):
        if m.group() == "{{":
            if depth == 0:
                start = m.start()
            depth += 1
        elif depth:
            depth -= 1
            if depth == 0:
                out.append(text[last:start])
                last = m.end()
    if depth:  # unbalanced tail: keep it as it is
        out.append(text[last:])
    else:
        out.append(text[last:])
    return "".join(out)


_NODES = None


def _node_types():
    global _NODES
    if _NODES is None:
        from mwparserfromhell.nodes import ExternalLink, Heading, HTMLEntity, Tag, Text, Wikilink

        _NODES = (ExternalLink, Heading, HTMLEntity, Tag, Text, Wikilink)
    return _NODES


_IMAGE_PARAM = re.compile(r"^\s*(\d+px|\d*x\d+px|upright(\s*=\s*[\d.]+)?|frameless|thumb(nail)?)\s*$", re.I)


def _is_image_link(params: str) -> bool:
    """Image parameters (`200px`, `x120px`, `upright`, `thumb`) among a link's `|` parts:
    the size keywords are the same in every language (only `thumb`/`left` get local
    names), so they identify file links whose namespace alias the dump does not list."""
    parts = params.split("|")
    return len(parts) >= 2 and any(_IMAGE_PARAM.match(p) for p in parts[:-1])


def _render(code, site: SiteInfo = DEFAULT_SITE) -> str:
    """Plain text of a parsed wikicode: one pass, dropping what we do not keep
    (far faster than Wikicode.remove(), which searches the tree per node)."""
    ExternalLink, Heading, HTMLEntity, Tag, Text, Wikilink = _node_types()

    out: list[str] = []
    for node in code.nodes:
        if isinstance(node, Text):
            out.append(node.value)
        elif isinstance(node, Wikilink):
            target = str(node.title).strip()
            if ":" in target:
                prefix = target.split(":", 1)[0].strip().lower()
                p = _ns_name(prefix.lstrip(":"))
                if p in site.file_prefixes or (p in site.category_prefixes and not target.startswith(":")):
                    continue
                if _INTERLANG.match(prefix) and not target.startswith(":"):
                    continue
            if node.text is not None:
                if _is_image_link(str(node.text)):
                    continue  # a file link under a namespace name the dump does not declare
                out.append(_render(node.text, site))
            else:
                out.append(target.lstrip(":").split("#", 1)[0] or target)
        elif isinstance(node, Tag):
            tag = str(node.tag).lower().strip()
            if tag in _DROP_TAGS:
                continue
            if tag == "br":
                out.append("\n")
            elif node.contents is not None and tag not in ("li", "dt", "dd", "hr"):
                out.append(_render(node.contents, site))
        elif isinstance(node, Heading):
            out.append(_render(node.title, site).strip())
        elif isinstance(node, ExternalLink):
            if node.title is not None:
                out.append(_render(node.title, site))
        elif isinstance(node, HTMLEntity):
            try:
                out.append(node.normalize())
            except ValueError:
                pass
        # Template, Comment, Argument, Parameter: dropped
    return "".join(out)


_PRE_STRIP = re.compile(r"<!--.*?-->|<ref[^>/]*/>|<ref(\s[^>]*)?>.*?</ref\s*>", re.S | re.I)
_POST_STRIP = re.compile(r"</?ref[^>]*>|</?(span|div|small|big|center|sup|sub|blockquote|poem)[^>]*>", re.I)


_MAGIC_WORD = re.compile(r"__([^\W_]+(?:_[^\W_]+)*)__")


def strip_magic_words(text: str) -> str:
    """Behaviour switches (``__NOTOC__``, ``__KHÔNG_MỤC_LỤC__``, ``__目次非表示__``...) in
    any language: ``__WORD__`` with no lower-case letter (``__init__`` stays)."""
    return _MAGIC_WORD.sub(lambda m: m.group(0) if any(c.islower() for c in m.group(1)) else "", text)


def wikitext_to_text(wikitext: str, site: SiteInfo = DEFAULT_SITE) -> str:
    import mwparserfromhell as mw

    # references and comments go before parsing: cheaper, and the parser leaves
    # some <ref> unparsed (e.g. inside unbalanced quotes)
    wikitext = strip_templates(_PRE_STRIP.sub("", wikitext))
    wikitext = strip_magic_words(_STYLE.sub("", wikitext))  # bold/italic quotes: text only, fewer nodes
    text = _render(mw.parse(wikitext, skip_style_tags=True), site)
    text = _POST_STRIP.sub("", text)
    lines: list[str] = []
    # leftovers the parser leaves as text: table rows of unparsed tables, magic words, stray brackets
    for ln in text.split("\n"):
        s = ln.strip()
        if not s:
            if lines and lines[-1] != "":
                lines.append("")
            continue
        if s.startswith(("{|", "|}", "|-", "!")) or (s.startswith("|") and not s.startswith("||")):
            continue
        s = re.sub(r"^[*#:;]+\s*", "", s)          # list / indent markers
        s = re.sub(r"^=+\s*(.*?)\s*=+$", r"\1", s)  # headings that strip_code kept
        s = re.sub(r"\s{2,}", " ", s).strip()
        if s:
            lines.append(s)
    return "\n".join(lines).strip()


def is_disambiguation(wikitext: str, extra: set[str]) -> bool:
    names = {m.strip().lower().replace("_", " ") for m in re.findall(r"\{\{\s*([^|}\n]+)", wikitext)}
    for n in names:
        if n in DISAMBIG_TEMPLATES or n in extra or n.endswith(" disambiguation") or n.endswith("曖昧さ回避"):
            return True
    return False
