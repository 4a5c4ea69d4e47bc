r"""Train a CamemBERT-style SentencePiece (unigram) tokenizer on local text.

    python scripts/train_tokenizer.py --input ../shared/data/fr_novels --vocab-size 8000 \
        --holdout-files 6 --out runs/mini/tokenizer

With --holdout-files K the text that `prepare_data.py --holdout-files K --seed S` holds out
(K whole files, or its --holdout-fraction of the documents when there are too few files) is
left out here too, so the tokenizer never sees the evaluation text, and the share of `<unk>`
pieces on that held-out text is printed. Every character seen at least --min-char-count times
in the training text, and every one of `tokenizer.FRENCH_CHARS`, gets a piece of its own.
"""

import sys

from jaxdistil import cli
from jaxdistil.data import corpus
from jaxdistil.run_config import base
from jaxdistil.tokenizer import MIN_CHAR_COUNT, train_tokenizer, unk_rate

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
    parser.add_argument("--min-char-count", type=int, default=MIN_CHAR_COUNT,
                        help="a character seen this often in the training text gets its own piece")
    parser.add_argument("--text-field", default="text", help="text field of .jsonl records")
    parser.add_argument("--encoding", choices=corpus.ENCODINGS, default=RUN_DATA.encoding,
                        help="codec of the input files (utf-8: undecodable bytes dropped and counted)")
    args = parser.parse_args(argv)
    cli.setup_logging()
    try:
        files = corpus.check_local_files(args.input, encoding=args.encoding)
        holdout = corpus.plan_holdout(files, args.holdout_files, args.holdout_fraction, seed=args.seed)
        read = dict(max_docs=args.max_docs, text_field=args.text_field, encoding=args.encoding)
        texts = corpus.iter_holdout_texts(holdout, held_out=False, **read)
        tokenizer = train_tokenizer(texts, args.vocab_size, args.out, seed=args.seed,
                                    min_char_count=args.min_char_count)
        print(f"wrote {args.out}: {len(tokenizer)} tokens, trained on {len(holdout.train_files)} file(s)")
        if not holdout.eval_files:
            print("<unk> rate not measured: nothing is held out (pass --holdout-files K)")
            return 0
        rate, pieces = unk_rate(tokenizer, corpus.iter_holdout_texts(holdout, held_out=True, **read))
    except (OSError, ValueError) as e:
        return cli.fail(e)
    shown = ", ".join(f.name for f in holdout.eval_files[:3]) + (" ..." if len(holdout.eval_files) > 3 else "")
    side = f"{holdout.document_fraction:g} of the documents of" if holdout.document_fraction else "held-out file(s)"
    print(f"held-out <unk> rate: {100 * rate:.4f} % ({round(rate * pieces):,} of {pieces:,} pieces; {side} {shown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
