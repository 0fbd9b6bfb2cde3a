"""Data-derived facts injected into networks, and the condition batch every network receives.

Networks never see the dataset. They are built from a :class:`DataSpec` (gene count, gene names,
vocabularies) and receive, at every forward call, a :class:`CondBatch` describing the condition of
each row: the perturbation set as padded token ids with an explicit mask, the covariate ids, and a
per-row flag for the null condition used by classifier-free guidance.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

#: Token id reserved for padding in perturbation token tensors. Real perturbation tokens start at 1.
PAD_TOKEN = 0


@dataclass(frozen=True)
class DataSpec:
    """What a network may know about the data.

    Parameters
    ----------
    n_genes
        Number of genes G (length of every expression vector).
    gene_names
        Gene names in the order the network sees them.
    perturbation_vocab
        Perturbation token names. Token id ``i + 1`` is ``perturbation_vocab[i]``; id 0 is padding.
    covariate_vocabs
        For each covariate key, its category names. Covariate id ``j`` of key ``k`` is
        ``covariate_vocabs[k][j]``.
    max_perturbations
        Maximum number of perturbation tokens in one condition (2 for dual combinations).
    """

    n_genes: int
    gene_names: tuple[str, ...] = ()
    perturbation_vocab: tuple[str, ...] = ()
    covariate_vocabs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    max_perturbations: int = 2

    @property
    def n_perturbation_tokens(self) -> int:
        """Size of the perturbation embedding table, padding included."""
        return len(self.perturbation_vocab) + 1

    @property
    def covariate_keys(self) -> tuple[str, ...]:
        """Covariate keys in a fixed order."""
        return tuple(self.covariate_vocabs)

    @property
    def covariate_sizes(self) -> tuple[int, ...]:
        """Number of categories per covariate key, in :attr:`covariate_keys` order."""
        return tuple(len(v) for v in self.covariate_vocabs.values())

    def to_dict(self) -> dict:
        """JSON-serialisable form."""
        return {
            "n_genes": self.n_genes,
            "gene_names": list(self.gene_names),
            "perturbation_vocab": list(self.perturbation_vocab),
            "covariate_vocabs": {k: list(v) for k, v in self.covariate_vocabs.items()},
            "max_perturbations": self.max_perturbations,
        }

    @classmethod
    def from_dict(cls, d: dict) -> DataSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(
            n_genes=int(d["n_genes"]),
            gene_names=tuple(d.get("gene_names", ())),
            perturbation_vocab=tuple(d.get("perturbation_vocab", ())),
            covariate_vocabs={k: tuple(v) for k, v in d.get("covariate_vocabs", {}).items()},
            max_perturbations=int(d.get("max_perturbations", 2)),
        )

    @classmethod
    def synthetic(
        cls, n_genes: int, n_perturbations: int = 4, covariate_sizes: tuple[int, ...] = (3,), max_perturbations: int = 2
    ) -> DataSpec:
        """A spec with generated names, for tests and benchmarks."""
        return cls(
            n_genes=n_genes,
            gene_names=tuple(f"g{i}" for i in range(n_genes)),
            perturbation_vocab=tuple(f"p{i}" for i in range(n_perturbations)),
            covariate_vocabs={f"cov{k}": tuple(f"c{k}_{j}" for j in range(n)) for k, n in enumerate(covariate_sizes)},
            max_perturbations=max_perturbations,
        )


@dataclass
class CondBatch:
    """The condition of each row of a batch.

    Parameters
    ----------
    pert_tokens
        ``[B, S]`` long tensor of perturbation token ids (``PAD_TOKEN`` where padded). A control row
        has no real token (all padding); ``A+B`` has two tokens.
    pert_mask
        ``[B, S]`` bool tensor, True where ``pert_tokens`` holds a real token.
    covariates
        ``[B, K]`` long tensor of covariate ids, one column per covariate key of the :class:`DataSpec`.
    null
        ``[B]`` bool tensor, True for rows whose condition is dropped (the unconditional branch of
        classifier-free guidance). Networks must ignore perturbation and covariate information on such
        rows and use the learned null embedding instead.
    """

    pert_tokens: torch.Tensor
    pert_mask: torch.Tensor
    covariates: torch.Tensor
    null: torch.Tensor

    @property
    def batch_size(self) -> int:
        """Number of rows."""
        return int(self.pert_tokens.shape[0])

    def to(self, device: torch.device | str) -> CondBatch:
        """Move every tensor to ``device``."""
        return CondBatch(
            self.pert_tokens.to(device),
            self.pert_mask.to(device),
            self.covariates.to(device),
            self.null.to(device),
        )

    def index(self, idx: torch.Tensor | slice) -> CondBatch:
        """Select rows."""
        return CondBatch(self.pert_tokens[idx], self.pert_mask[idx], self.covariates[idx], self.null[idx])

    def with_null(self, null: bool | torch.Tensor) -> CondBatch:
        """Copy with the null flag set to ``null`` on every row (or to the given per-row tensor)."""
        if isinstance(null, bool):
            flag = torch.full_like(self.null, null)
        else:
            flag = null.to(self.null.device, torch.bool)
        return CondBatch(self.pert_tokens, self.pert_mask, self.covariates, flag)

    @staticmethod
    def cat(batches: list[CondBatch]) -> CondBatch:
        """Concatenate along the batch axis (token axes padded to the widest)."""
        width = max(b.pert_tokens.shape[1] for b in batches)

        def pad(t: torch.Tensor, value: int | bool) -> torch.Tensor:
            if t.shape[1] == width:
                return t
            extra = torch.full((t.shape[0], width - t.shape[1]), value, dtype=t.dtype, device=t.device)
            return torch.cat([t, extra], dim=1)

        return CondBatch(
            torch.cat([pad(b.pert_tokens, PAD_TOKEN) for b in batches]),
            torch.cat([pad(b.pert_mask, False) for b in batches]),
            torch.cat([b.covariates for b in batches]),
            torch.cat([b.null for b in batches]),
        )

    @staticmethod
    def repeat(tokens: list[int], covariates: list[int], n: int, width: int | None = None) -> CondBatch:
        """``n`` identical rows for one condition given its token ids and covariate ids."""
        width = max(width or 0, len(tokens), 1)
        tok = torch.full((n, width), PAD_TOKEN, dtype=torch.long)
        if tokens:
            tok[:, : len(tokens)] = torch.tensor(tokens, dtype=torch.long)
        mask = tok != PAD_TOKEN
        cov = torch.tensor(covariates, dtype=torch.long).reshape(1, -1).expand(n, -1).clone()
        return CondBatch(tok, mask, cov, torch.zeros(n, dtype=torch.bool))
