"""The checkpoint: one home for everything about a model folder (``avscene/checkpoint/``).

Read from the bottom up, one module per job:

* :mod:`~avscene.checkpoint.format`: the folder format: its file names (the separation parts'
  included), ``config.json`` (its content, :func:`~avscene.checkpoint.format.read_config` and the
  one writer, :func:`~avscene.checkpoint.format.write_config`), the weights (read with
  safetensors only, checked strictly: :func:`~avscene.checkpoint.format.check_state_dict`);
* :mod:`~avscene.checkpoint.parts`: what a checkpoint carries for separation (the part table,
  :class:`~avscene.checkpoint.parts.SeparationParts`), read strictly and added to a folder;
* :mod:`~avscene.checkpoint.resolve`: where the files are: a local folder or a Hugging Face Hub
  snapshot, with the Hub's timeouts and its errors turned into one-line messages;
* :mod:`~avscene.checkpoint.card`: the model card (``README.md``), one template;
* :mod:`~avscene.checkpoint.load`: :func:`~avscene.checkpoint.load.save_pretrained` and the one
  loader, :func:`~avscene.checkpoint.load.load_pretrained`, which builds a complete
  :class:`~avscene.checkpoint.load.LoadedModel` (classifier and separation parts);
* :mod:`~avscene.checkpoint.push`: publishing a folder to the Hub (``avscene upload``).

Nothing here imports torch, safetensors or huggingface_hub at import time.
"""
