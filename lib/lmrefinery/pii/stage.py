"""The `pii` stage: personal data replaced by typed placeholders.

E-mail addresses, IPv4 and IPv6 addresses (validated with `ipaddress`), phone
numbers in international and common national formats and, when enabled,
card-like numbers (13-19 digits passing the Luhn check) become `<EMAIL>`,
`<IPV4>`, `<IPV6>`, `<PHONE>`, `<CARD>`. `text`, `title` and every string in
`meta` (so conversation messages too) are redacted. Counts per type go to the
run's counters (`pii_email`, ...) and the row's `pii_count`; the originals are
never written or logged. No document is rejected.
"""
from __future__ import annotations

import ipaddress
import json
import re

import pyarrow as pa
from pydantic import Field, field_validator

from ..core.stage import BatchResult, Stage, StageParams, register

TYPES = ("email", "ipv4", "ipv6", "phone", "card")

# Boundaries are ASCII word characters, not \w: in Python \w matches CJK characters, and
# Chinese text puts an address or number straight after a word ("电话13812345678").
EMAIL = re.compile(
    r"(?<![0-9A-Za-z_.+-])[A-Za-z0-9][A-Za-z0-9._%+-]{0,63}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,24}(?![0-9A-Za-z_-])")
IPV4 = re.compile(r"(?<![0-9A-Za-z_.])(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
                  r"(?![0-9A-Za-z_]|\.\d)")
# candidates; ipaddress.IPv6Address decides
IPV6 = re.compile(r"(?<![0-9A-Za-z_:.])(?:[0-9A-Fa-f]{0,4}:){2,7}(?:[0-9A-Fa-f]{1,4}|(?:\d{1,3}\.){3}\d{1,3})?"
                  r"(?![0-9A-Za-z_:])|(?<![0-9A-Za-z_:])::(?![0-9A-Za-z_:])")
# +CC then 6-14 more digits in groups; or national (NNN) NNN-NNNN / NNN-NNN-NNNN / 0NN NNNN NNNN
# forms; or a mainland-China mobile number (1[3-9] + 9 digits, bare or as 3-4-4 groups)
PHONE = re.compile(
    r"(?<![0-9A-Za-z_+])(?:"
    r"\+\d{1,3}[\s.\-]?(?:\(0?\d{1,4}\)[\s.\-]?)?\d{1,5}(?:[\s.\-]?\d{2,5}){1,4}"
    r"|\(\d{2,5}\)[\s.\-]?\d{3,4}[\s.\-]?\d{3,4}"
    r"|\d{3}[.\-]\d{3}[.\-]\d{4}"
    r"|0\d{1,4}[\s\-]\d{3,4}[\s\-]?\d{3,4}"
    r"|0\d{2,3}-\d{7,8}"
    r"|1[3-9]\d(?:[\s\-]?\d{4}){2}"
    r")(?![0-9A-Za-z_])")
CARD = re.compile(r"(?<![0-9A-Za-z_-])(?:\d[ -]?){12,18}\d(?![0-9A-Za-z_-])")


def _digits(s: str) -> str:
    return re.sub(r"\D", "", s)


def luhn_ok(number: str) -> bool:
    d = [int(c) for c in number][::-1]
    total = sum(d[0::2]) + sum(sum(divmod(2 * x, 10)) for x in d[1::2])
    return total % 10 == 0


class PiiParams(StageParams):
    types: list[str] = Field(default_factory=lambda: ["email", "ipv4", "ipv6", "phone"],
                             description="what to replace; add 'card' for Luhn-valid card numbers")
    placeholders: dict[str, str] = Field(default_factory=dict, description="override, e.g. {email: '[EMAIL]'}")
    fields: list[str] = Field(default_factory=lambda: ["text", "title", "meta"],
                              description="columns to redact (meta: every string value in the JSON)")
    keep_private_ips: bool = Field(False, description="leave private/loopback IPs (e.g. 192.168.x.x) as they are")
    min_phone_digits: int = Field(8, ge=5, le=15)

    @field_validator("types")
    @classmethod
    def _types(cls, v):
        bad = [t for t in v if t not in TYPES]
        if bad:
            raise ValueError(f"unknown PII types {bad}; known: {list(TYPES)}")
        return v


class Redactor:
    def __init__(self, p: PiiParams):
        self.p = p
        self.ph = {t: p.placeholders.get(t, f"<{t.upper()}>") for t in TYPES}
        self.order = [t for t in ("email", "card", "ipv6", "ipv4", "phone") if t in p.types]

    def _ip_ok(self, s: str, v6: bool) -> bool:
        try:
            ip = ipaddress.IPv6Address(s) if v6 else ipaddress.IPv4Address(s)
        except ValueError:
            return False
        if v6 and s.count(":") < 2:
            return False
        return not (self.p.keep_private_ips and (ip.is_private or ip.is_loopback))

    def redact(self, text: str, counts: dict[str, int]) -> str:
        if not text:
            return text
        for t in self.order:
            if t == "email":
                if "@" not in text:
                    continue
                pat, ok = EMAIL, None
            elif t == "card":
                pat, ok = CARD, lambda s: 13 <= len(_digits(s)) <= 19 and luhn_ok(_digits(s))
            elif t == "ipv6":
                if "::" not in text and text.count(":") < 3:
                    continue
                pat, ok = IPV6, lambda s: self._ip_ok(s, True)
            elif t == "ipv4":
                pat, ok = IPV4, lambda s: self._ip_ok(s, False)
            else:
                pat, ok = PHONE, lambda s: self.p.min_phone_digits <= len(_digits(s)) <= 15
            ph = self.ph[t]

            def sub(m, ok=ok, t=t, ph=ph):
                if ok is not None and not ok(m.group(0)):
                    return m.group(0)
                counts[t] = counts.get(t, 0) + 1
                return ph

            text = pat.sub(sub, text)
        return text

    def redact_json(self, obj, counts):
        if isinstance(obj, str):
            return self.redact(obj, counts)
        if isinstance(obj, list):
            return [self.redact_json(x, counts) for x in obj]
        if isinstance(obj, dict):
            return {k: self.redact_json(v, counts) for k, v in obj.items()}
        return obj


@register
class PiiStage(Stage):
    name = "pii"
    changes_text = True
    Params = PiiParams
    params: PiiParams
    description = "Replace e-mails, IPv4/IPv6, phone numbers (and optionally card numbers) with typed placeholders."

    def setup(self) -> None:
        self.redactor = Redactor(self.params)

    def process(self, batch: pa.Table) -> BatchResult:
        total: dict[str, int] = {}
        per_row = [0] * batch.num_rows
        for f in self.params.fields:
            if f not in batch.column_names:
                continue
            vals = batch.column(f).to_pylist()
            out: list[str | None] = []
            for i, v in enumerate(vals):
                c: dict[str, int] = {}
                if v is None:
                    out.append(v)
                    continue
                if f == "meta":
                    try:
                        obj = json.loads(v)
                    except ValueError:
                        obj = None
                    if obj is None or isinstance(obj, str):
                        new = self.redactor.redact(v, c)
                    else:
                        red = self.redactor.redact_json(obj, c)
                        new = json.dumps(red, ensure_ascii=False, sort_keys=True) if c else v
                else:
                    new = self.redactor.redact(v, c)
                out.append(new)
                for k, n in c.items():
                    total[k] = total.get(k, 0) + n
                    per_row[i] += n
            batch = batch.set_column(batch.column_names.index(f), f, pa.array(out, pa.string()))
        arr = pa.array(per_row, pa.int64())
        if "pii_count" in batch.column_names:
            batch = batch.set_column(batch.column_names.index("pii_count"), "pii_count", arr)
        else:
            batch = batch.append_column("pii_count", arr)
        counters = {f"pii_{k}": v for k, v in total.items()}
        return BatchResult(batch, None, counters)
