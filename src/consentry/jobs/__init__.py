"""One jobs table claimed by ``consentry worker``: the API enqueues, a worker runs (see ``runner``)."""
