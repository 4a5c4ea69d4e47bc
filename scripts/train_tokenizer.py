r"""Train a CamemBERT-style SentencePiece (unigram) tokenizer on local text.

    python scripts/train_tokenizer.py --input ../shared/data/fr_novels --vocab-size 8000 \
        --holdout-files 6 --out runs/mini/tokenizer

With --holdout-files K the text that `prepare_data.py --holdout-files K --seed S` holds out
(K whole files, or its --holdout-fraction of the documents when there are too few files) is
left out here too, so the tokenizer never sees the evaluation text.
"""

import sys

from jaxdistil import cli
from jaxdistil.data import corpus
from jaxdistil.run_config import base
from jaxdistil.tokenizer import train_tokenizer

RUN_DATA = base().data  # the defaults shared with a run's data settings (and prepare_data.py)


def main(argv=None) -> int:
    parser = cli.parser(__doc__)
    parser.add_argument("--input", nargs="+", required=True, help=".txt/.jsonl files, directories, globs (required)")
    parser.add_argument("--vocab-size", type=int, required=True,
                        help="ids in the tokenizer, special tokens and <mask> included (required)")
    parser.add_argument("--out", required=True, help="directory for the tokenizer files (required)")
    parser.add_argument("--holdout-files", type=int, default=0,
                        help="leave out the text that prepare_data.py --holdout-files K holds out")
    parser.add_argument("--holdout-fraction", type=float, default=RUN_DATA.holdout_fraction,
                        help="as prepare_data.py's: the documents held out when there are too few files")
    parser.add_argument("--seed", type=int, default=0, help="seed of the held-out choice and of SentencePiece")
    parser.add_argument("--max-docs", type=int, default=500_000, help="documents to train on, at most")
    parser.add_argument("--text-field", default="text", help="text field of .jsonl records")
    parser.add_argument("--encoding", choices=corpus.ENCODINGS, default=RUN_DATA.encoding,
                        help="codec of the input files (utf-8: undecodable bytes dropped and counted)")
    args = parser.parse_args(argv)
    cli.setup_logging()
    try:
        files = corpus.check_local_files(args.input, encoding=args.encoding)
        holdout = corpus.plan_holdout(files, args.holdout_files, args.holdout_fraction, seed=args.seed)
        texts = corpus.iter_holdout_texts(holdout, held_out=False, max_docs=args.max_docs,
                                          text_field=args.text_field, encoding=args.encoding)
        tokenizer = train_tokenizer(texts, args.vocab_size, args.out, seed=args.seed)
    except (OSError, ValueError) as e:
        return cli.fail(e)
    print(f"wrote {args.out}: {len(tokenizer)} tokens, trained on {len(holdout.train_files)} file(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
