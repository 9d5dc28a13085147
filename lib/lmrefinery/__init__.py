"""lmrefinery: raw corpora in object storage -> curated shards -> a trained LM.

Where a document goes, in order (each folder is a stage family):

    ingest/    read raw sources (JSONL, Parquet, WARC/WET, Wikipedia XML, books,
               instruction sets) into the document schema        -> stage `read`
    clean/     Unicode/whitespace repair, length filter           -> `clean`, `length_filter`
    lid/       fastText language identification                  -> `lid`
    quality/   heuristic rule sets and the quality classifier     -> `quality`, `quality_model`
    pii/       personal-data redaction                            -> `pii`
    dedup/     exact and MinHash near-duplicate removal, decontam -> `exact_dedup`, `dedup`, `decontaminate`
    tokenize/  tokenizer training and Megatron-style token shards -> `tokenize`
    train/     Ray Train pretraining and instruction tuning       -> `lmrefinery train`
    instruct/  instruction-data construction path                -> `lmrefinery instruct ...`

Shared machinery lives in core/ (schema, recipes, storage, stage API, commit
protocol, runner) and engines/ (Ray Data and Spark executors).
"""

__version__ = "0.1.0"
