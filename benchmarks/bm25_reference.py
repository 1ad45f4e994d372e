"""Our keyword index against a plain Lucene-style BM25 on BEIR folders, by nDCG@10 per document.

    python -m benchmarks.bm25_reference ../shared/data/msmarco_subset \\
        --queries queries.judged.jsonl --qrels qrels/test.normalized.tsv

Both score whole documents with bm25s (Lucene's IDF and length normalisation); they differ in the
analysis and the parameters:

- ``ours``: the keyword index as built (``indexer.index.keyword``: identifiers whole and in parts,
  Snowball stemming, Lucene's 33 English stop words, k1 0.9, b 0.4);
- ``ours, bm25s defaults``: the same analysis with bm25s' k1 1.5, b 0.75 (what the index used
  before);
- ``lucene``: Lucene's EnglishAnalyzer as Anserini's BEIR baselines run it, approximated: word
  characters, lower case, possessive 's dropped, the 33 stop words, Porter stemming, k1 0.9, b 0.4.

The indexer's own evaluation scores chunks (a document by its best chunk); on corpora of
passages shorter than a chunk the two agree.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

from benchmarks.machine import add_markdown_flag, markdown_table
from indexer.eval.datasets import load_dataset, read_corpus
from indexer.eval.metrics import ndcg_at_k
from indexer.index.keyword import BM25_B, BM25_K1, query_terms, tokenize

_WORD = re.compile(r"\w+")


def lucene_analyzer() -> Callable[[str], list[str]]:
    import bm25s
    import Stemmer

    stop = frozenset(bm25s.stopwords.STOPWORDS_EN)
    stem = Stemmer.Stemmer("porter").stemWord

    def analyze(text: str) -> list[str]:
        text = re.sub(r"'s\b", "", text.lower())
        return [stem(w) for w in _WORD.findall(text) if w not in stop]

    return analyze


def evaluate(folder: Path, queries: str | None, qrels: str | None) -> dict[str, float]:
    import bm25s

    dataset = load_dataset(folder, queries=queries, qrels=qrels)
    docs = list(read_corpus(folder / "corpus.jsonl"))
    ids = [d.id for d in docs]
    judged = [q for q in dataset.questions if q.qrels]
    lucene = lucene_analyzer()
    variants: dict[str, tuple[Callable[[str], list[str]], float, float, bool]] = {
        "ours": (tokenize, BM25_K1, BM25_B, True),
        "ours, bm25s defaults (k1 1.5, b 0.75)": (tokenize, 1.5, 0.75, True),
        "lucene (porter, k1 0.9, b 0.4)": (lucene, 0.9, 0.4, False),
    }
    results = {}
    for name, (analyze, k1, b, ours) in variants.items():
        index = bm25s.BM25(k1=k1, b=b, method="lucene")
        index.index([analyze(d.text) or [""] for d in docs], show_progress=False)
        total = 0.0
        for question in judged:
            vocab = index.vocab_dict
            if ours:
                terms = query_terms(question.question, vocab)
            else:
                terms = [t for t in analyze(question.question) if t in vocab]
            if not terms:
                continue
            found, scores = index.retrieve([terms], k=min(100, len(ids)), show_progress=False, n_threads=1)
            ranked = [ids[int(i)] for i, s in zip(found[0], scores[0], strict=True) if s > 0]
            total += ndcg_at_k(ranked, question.qrels, 10)
        results[name] = total / len(judged)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder", type=Path, help="a BEIR folder (corpus.jsonl, queries, qrels)")
    parser.add_argument("--queries", help="queries file in the folder")
    parser.add_argument("--qrels", help="qrels file in the folder")
    add_markdown_flag(parser)
    args = parser.parse_args()
    results = evaluate(args.folder, args.queries, args.qrels)
    if args.markdown:
        rows = [[name, round(value, 4)] for name, value in results.items()]
        print(markdown_table([f"BM25 on {args.folder.name}, per document", "nDCG@10"], rows))
        return
    print(f"| BM25 on {args.folder.name} | nDCG@10 |\n|---|---:|")
    for name, value in results.items():
        print(f"| {name} | {value:.4f} |")


if __name__ == "__main__":
    main()
