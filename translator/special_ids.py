"""The special token ids that every tokenizer trained here and every model rely on: padding is
0 (masks are ``ids != PAD_ID``), unknown pieces 1, and each target sentence is read as
``<sos> y1 .. yn`` and scored on ``y1 .. yn <eos>``."""

PAD_ID, UNK_ID, SOS_ID, EOS_ID = 0, 1, 2, 3
