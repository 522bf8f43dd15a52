"""Separation: the sound of one class in a mixture (``avscene separate``, ``evaluate-separation``).

One package, read from the bottom up:

* :mod:`~avscene.separation.ranking`: the paper's NCP ranking and soft-mask reconstruction (pure maths);
* :mod:`~avscene.separation.dictionary`: supervised NMF with class and background dictionaries;
* :mod:`~avscene.separation.methods`: one chunk strategy per method (how each builds its mask);
* :mod:`~avscene.separation.registry`: the methods (``MethodName``, ``METHODS``): what each needs
  from a checkpoint, how it is built, its name in reports; ``resolve_method``;
* :mod:`~avscene.separation.streaming`: :class:`StreamingSeparation`, a strategy run chunk by chunk
  over a stream, cross-faded, into a sink.

What a checkpoint carries for separation (the part table, the files, reading them when the model
is loaded) is :mod:`avscene.checkpoint.parts`'s: separation imports the checkpoint package, which
imports only separation's maths (:mod:`~avscene.separation.dictionary`).
The mask network itself is a torch module in :mod:`avscene.nn.masknet`; the per-file task is
:mod:`avscene.tasks.separate`. "Separator" names one thing: the mask network as a part of a
checkpoint (its file ``separator.safetensors``, the command ``train-separator``).
"""
