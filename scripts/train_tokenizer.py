r"""Train a CamemBERT-style SentencePiece (unigram) tokenizer on local text.

    python scripts/train_tokenizer.py --input ../shared/data/fr_novels --vocab-size 8000 \
        --holdout-files 6 --out runs/mini/tokenizer

With --holdout-files K the same K files that `prepare_data.py --holdout-files K --seed S`
holds out are left out here too, so the tokenizer never sees the evaluation text.
"""

import itertools
import sys

from jaxdistil import cli
from jaxdistil.data import corpus
from jaxdistil.tokenizer import train_tokenizer


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--input", nargs="+", required=True, help=".txt/.jsonl files, directories, globs (required)")
    parser.add_argument("--vocab-size", type=int, required=True,
                        help="ids in the tokenizer, special tokens and <mask> included (required)")
    parser.add_argument("--out", required=True, help="directory for the tokenizer files (required)")
    parser.add_argument("--holdout-files", type=int, default=0,
                        help="leave out the K whole files that prepare_data.py --holdout-files K holds out")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out file choice and of SentencePiece")
    parser.add_argument("--max-docs", type=int, default=500_000, help="documents to train on, at most")
    parser.add_argument("--text-field", default="text", help="text field of .jsonl records")
    args = parser.parse_args(argv)
    cli.setup_logging()
    try:
        files = corpus.resolve_paths(args.input)
        train_files, _ = corpus.split_holdout_files(files, args.holdout_files, seed=args.seed)
        texts = corpus.iter_local_texts(train_files, text_field=args.text_field, min_chars=1)
        tokenizer = train_tokenizer(itertools.islice(texts, args.max_docs), args.vocab_size, args.out,
                                    seed=args.seed)
    except (OSError, ValueError) as e:
        return cli.fail(e)
    print(f"wrote {args.out}: {len(tokenizer)} tokens, trained on {len(train_files)} file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
