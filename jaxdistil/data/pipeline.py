"""grain input pipeline over packed blocks: shuffle, repeat, per-process split, batch.

The whole pipeline is a grain `MapDataset` — a pure function from an index to a batch —
so its iterator state is one integer (`{"next_index": k}`, k = batches consumed on this
process) and resuming from it reproduces exactly the batches an uninterrupted run would
have seen.

Global order first, then the per-process split: the dataset is shuffled (seeded, a new
order each epoch) and repeated as one global stream of blocks; global batch k is blocks
[k*B, (k+1)*B) of that stream, and process p of P takes the p-th run of B/P consecutive
rows of it. So what a step trains on does not depend on how many processes share it: the
processes' rows, concatenated in process order (as `jax.make_array_from_process_local_data`
assembles them), are exactly the single-process batch, row for row.

Checkpointing with Orbax (what the trainer should do)::

    mngr = ocp.CheckpointManager(ckpt_dir, options=...)
    mngr.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(train_state),
        data_iter=iterator_save_args(train_iter)))          # grain.checkpoint.CheckpointSave
    ...
    train_iter = make_train_iterator(blocks, ...same arguments...)
    restored = mngr.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state),
        data_iter=iterator_restore_args(train_iter)))      # sets train_iter's state in place
    # next(train_iter) now returns the batch that followed the save, as without the restart.

grain's handler writes one `process_<i>-of-<n>.json` per process (i = jax.process_index()),
so every process saves and restores its own state; it reads the state synchronously inside
`save`, so asynchronous checkpointing still records the state at the save call.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

import grain
import jax
import numpy as np

logger = logging.getLogger(__name__)

Batch = dict[str, np.ndarray]

_SHUFFLE_STREAM = 0x5EED_DA7A  # keeps the shuffle's seed stream apart from other uses of `seed`


def resolve_process(process_index: int | None, process_count: int | None) -> tuple[int, int]:
    """(index, count) of this process, defaulting to JAX's; validated."""
    index = jax.process_index() if process_index is None else process_index
    count = jax.process_count() if process_count is None else process_count
    if count < 1 or not 0 <= index < count:
        raise ValueError(f"process_index {index} is not in [0, process_count={count})")
    return index, count


def per_process_batch_size(global_batch_size: int, process_count: int) -> int:
    """Rows each process loads per step; the global batch must split evenly."""
    if global_batch_size < 1 or global_batch_size % process_count:
        raise ValueError(
            f"global_batch_size {global_batch_size} must be a positive multiple of the "
            f"process count {process_count}."
        )
    return global_batch_size // process_count


def shuffle_seed(seed: int) -> int:
    """A well-mixed 32-bit shuffle seed derived from the run's seed.

    grain shuffles epoch e with seed `(seed + e) % 2**32`, so runs with seeds s and s+1
    would share all but one epoch order (shifted by one); hashing the seed first makes
    neighbouring run seeds unrelated.
    """
    return int(np.random.SeedSequence([seed, _SHUFFLE_STREAM]).generate_state(1)[0])


def to_model_inputs(block_batch: np.ndarray, pad_id: int) -> Batch:
    """The model's inputs: ids, and a mask that is 1 on every non-pad position."""
    input_ids = np.asarray(block_batch, dtype=np.int32)
    return {"input_ids": input_ids, "attention_mask": (input_ids != pad_id).astype(np.int32)}


def _stack_blocks(rows: Sequence[np.ndarray]) -> np.ndarray:
    # Copies out of the memory map, so a batch never pins shard pages.
    return np.stack([np.asarray(r, dtype=np.int32) for r in rows])


def _check_blocks(blocks: Sequence[np.ndarray], min_blocks: int, what: str) -> None:
    if len(blocks) < min_blocks:
        raise ValueError(
            f"{what}: {len(blocks)} block(s), fewer than one global batch ({min_blocks}); "
            "use more data or a smaller global_batch_size."
        )


def make_train_dataset(
    blocks: Sequence[np.ndarray],
    *,
    global_batch_size: int,
    seed: int,
    pad_id: int,
    process_index: int | None = None,
    process_count: int | None = None,
    num_epochs: int | None = None,
) -> grain.MapDataset:
    """The training pipeline as a grain MapDataset of this process's batches.

    `num_epochs=None` repeats forever; a finite run stops after the last *full* global
    batch, so every process yields the same number of batches (no multi-host hang).
    """
    index, count = resolve_process(process_index, process_count)
    local_batch = per_process_batch_size(global_batch_size, count)
    _check_blocks(blocks, global_batch_size, "training data")
    if seed < 0:
        raise ValueError(f"seed must be non-negative, got {seed}")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be >= 1 or None, got {num_epochs}")

    ds = grain.MapDataset.source(blocks)
    # Shuffle before repeat: grain reseeds each epoch, so each epoch gets its own order and
    # no epoch's blocks mix with another's.
    ds = ds.shuffle(seed=shuffle_seed(seed)).repeat(num_epochs)
    if num_epochs is not None:
        ds = ds[: len(ds) // global_batch_size * global_batch_size]
    # Chunks of `local_batch` consecutive rows; process p takes chunk k*P + p (see above).
    ds = ds.batch(local_batch, drop_remainder=True, batch_fn=_stack_blocks)
    ds = ds[index::count]
    logger.info(
        "train data: %d blocks, process %d of %d loads %d of %d rows per step, seed %d, epochs %s",
        len(blocks),
        index,
        count,
        local_batch,
        global_batch_size,
        seed,
        num_epochs or "unbounded",
    )
    return ds.map(functools.partial(to_model_inputs, pad_id=pad_id))


def make_train_iterator(
    blocks: Sequence[np.ndarray],
    *,
    global_batch_size: int,
    seed: int,
    pad_id: int,
    process_index: int | None = None,
    process_count: int | None = None,
    num_epochs: int | None = None,
    read_options: grain.ReadOptions | None = None,
) -> grain.DatasetIterator:
    """A checkpointable iterator of this process's training batches.

    Yields {"input_ids", "attention_mask"}: int32 (global_batch_size / process_count,
    seq_len). `get_state()` / `set_state()` (or `iterator_save_args` /
    `iterator_restore_args` with Orbax) resume it exactly. Prefetching runs in threads
    (`read_options`, grain's default: 16 threads, 500 batches ahead).
    """
    ds = make_train_dataset(
        blocks,
        global_batch_size=global_batch_size,
        seed=seed,
        pad_id=pad_id,
        process_index=process_index,
        process_count=process_count,
        num_epochs=num_epochs,
    )
    return iter(ds.to_iter_dataset(read_options=read_options))


def make_eval_batches(
    blocks: Sequence[np.ndarray],
    *,
    global_batch_size: int,
    pad_id: int,
    process_index: int | None = None,
    process_count: int | None = None,
) -> grain.MapDataset:
    """Held-out batches in a fixed order, every block exactly once (no shuffle, no repeat).

    The last global batch is filled with all-pad rows (attention_mask all 0) so every
    batch has the same shape (one compilation) and every process the same number of
    batches; metrics must therefore weight by the attention mask, as masked-LM metrics do.
    Re-iterable: `for batch in make_eval_batches(...)`, and `len()` is the batch count.
    """
    index, count = resolve_process(process_index, process_count)
    local_batch = per_process_batch_size(global_batch_size, count)
    _check_blocks(blocks, 1, "eval data")
    seq_len = int(np.asarray(blocks[0]).shape[-1])

    ds = grain.MapDataset.source(blocks)
    num_fill = -len(blocks) % global_batch_size
    if num_fill:
        fill = np.full((num_fill, seq_len), pad_id, dtype=np.int32)
        ds = grain.MapDataset.concatenate([ds, grain.MapDataset.source(fill)])
    # Chunks of `local_batch` consecutive rows; process p takes chunk k*P + p, so process
    # rows concatenated in process order are exactly the single-process batch, in order.
    ds = ds.batch(local_batch, drop_remainder=True, batch_fn=_stack_blocks)
    ds = ds[index::count]
    return ds.map(functools.partial(to_model_inputs, pad_id=pad_id))


def iterator_save_args(iterator: grain.DatasetIterator) -> Any:
    """Orbax save args for the data iterator: one `Composite` item beside the train state.

    grain's handler stores `iterator.get_state()` as JSON, one file per JAX process.
    """
    return grain.checkpoint.CheckpointSave(iterator)


def iterator_restore_args(iterator: grain.DatasetIterator) -> Any:
    """Orbax restore args that set a freshly made iterator's state in place.

    The iterator must come from `make_train_iterator` with the same blocks, batch size,
    seed, epochs and process layout as the saved one; Orbax returns the same object.
    """
    return grain.checkpoint.CheckpointRestore(iterator)
