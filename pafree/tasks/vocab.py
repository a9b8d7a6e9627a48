"""Token vocabularies with the four special ids shared by every sequence task."""
import numpy as np

PAD, BOS, EOS, UNK = 0, 1, 2, 3
SPECIALS = ("<pad>", "<bos>", "<eos>", "<unk>")


class Vocab:
    """Tokens <-> ids; ids 0..3 are PAD, BOS, EOS, UNK, the task's tokens follow in order."""

    PAD, BOS, EOS, UNK = PAD, BOS, EOS, UNK

    def __init__(self, tokens):
        self.itos = list(SPECIALS) + list(tokens)
        self.stoi = {tok: i for i, tok in enumerate(self.itos)}
        if len(self.stoi) != len(self.itos):
            raise ValueError("duplicate tokens in vocabulary")

    def __len__(self):
        return len(self.itos)

    def encode(self, tokens):
        """Ids of ``tokens`` (unknown tokens map to UNK; no BOS/EOS added)."""
        return [self.stoi.get(tok, UNK) for tok in tokens]

    def decode(self, ids):
        """Tokens of ``ids`` up to the first EOS, without PAD and BOS."""
        out = []
        for i in ids:
            i = int(i)
            if i == EOS:
                break
            if i not in (PAD, BOS):
                out.append(self.itos[i])
        return out


def pad_batch(seqs):
    """List of id lists -> (B, T) int64 padded with PAD and the (B, T) bool mask of real ids."""
    width = max(len(s) for s in seqs)
    ids = np.full((len(seqs), width), PAD, np.int64)
    for row, s in zip(ids, seqs):
        row[:len(s)] = s
    return ids, ids != PAD
