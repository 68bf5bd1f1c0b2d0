"""Published figures that reports lay beside ours.

Hershey, Chen, Le Roux, Watanabe, "Deep clustering: discriminative embeddings for segmentation and
separation", ICASSP 2016: about 6 dB SDR improvement on wsj0-2mix with a BLSTM and D = 20-40, for
closed and open speaker sets alike. Only figures we can cite are filled in; others stay empty.
"""

PAPER_SDRI_DB = {
    # (num_speakers, condition) -> SDR improvement in dB
    (2, "closed"): 6.0,
    (2, "open"): 6.0,
}


def paper_sdri(num_speakers: int, condition: str):
    """The paper's SDRi (dB) for this speaker count and condition, or None where it gives none."""
    return PAPER_SDRI_DB.get((int(num_speakers), str(condition)))
