"""PII redaction."""
