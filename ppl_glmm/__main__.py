"""``python -m ppl_glmm demo``: the ``ppl-glmm`` command (:mod:`.cli`) without the installed script."""

from .cli import main

main()
