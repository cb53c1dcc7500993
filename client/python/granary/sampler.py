"""HintedSampler: a PyTorch sampler that tells granaryd each epoch's order.

Built on first use of granary.HintedSampler, so that importing granary does not
import torch.
"""

import os
import warnings


def _sample_path(data_source, index):
    """The file of sample index in a dataset that keeps its file list the way
    torchvision's ImageFolder / DatasetFolder do (samples or imgs: (path,
    target) pairs), or as a plain list of paths (files, paths)."""
    for attr in ("samples", "imgs"):
        seq = getattr(data_source, attr, None)
        if seq is not None:
            item = seq[index]
            return item[0] if isinstance(item, (tuple, list)) else item
    for attr in ("files", "paths"):
        seq = getattr(data_source, attr, None)
        if seq is not None:
            return seq[index]
    raise TypeError("cannot tell the file of a sample of %s: give path_fn=" %
                    type(data_source).__name__)


def _has_file_list(data_source):
    return any(getattr(data_source, a, None) is not None
               for a in ("samples", "imgs", "files", "paths"))


def _make_hinted_sampler():
    from torch.utils.data import RandomSampler, Sampler

    import granary

    class HintedSampler(Sampler):
        """Wraps a sampler (by default RandomSampler(data_source)). Each time an
        epoch starts (__iter__), it draws the whole epoch's order of indices,
        maps them to file paths, starts a new epoch of the dataset (epoch), sends
        that order to granaryd (hint), then yields the indices unchanged.

        path_fn(index) -> path maps an index to its file; without it the
        dataset's samples/imgs (torchvision ImageFolder) or files/paths lists
        are used. dataset names the daemon's dataset (default: the mount of the
        files). The sampler may also yield lists of indices (a batch sampler):
        they are flattened for the hint and yielded as they are.

        When the daemon cannot be reached the epoch goes on without the hint,
        with one warning: the cache is never a reason for training to stop.
        """

        def __init__(self, data_source=None, sampler=None, path_fn=None, dataset=None,
                     client=None, generator=None):
            if sampler is None:
                if data_source is None:
                    raise TypeError("HintedSampler needs a data_source or a sampler")
                sampler = RandomSampler(data_source, generator=generator)
            if path_fn is None:
                if data_source is None or not _has_file_list(data_source):
                    raise TypeError("HintedSampler: give path_fn=, or a data_source with "
                                    "samples/imgs (like torchvision's ImageFolder) or "
                                    "files/paths")
                path_fn = lambda i: _sample_path(data_source, i)  # noqa: E731
            self.data_source = data_source
            self.sampler = sampler
            self.path_fn = path_fn
            self.dataset = dataset
            self.client = client
            self.epochs = 0          # epochs started through this sampler
            self.last_epoch = None   # the daemon's epoch number, when it answered
            self.last_hinted = 0     # paths the daemon took for the last order
            self._warned = False

        def __len__(self):
            return len(self.sampler)

        def set_epoch(self, epoch):
            """Passed on to a DistributedSampler (or any sampler that has it)."""
            if hasattr(self.sampler, "set_epoch"):
                self.sampler.set_epoch(epoch)

        def _announce(self, paths):
            try:
                # the epoch first: an order sent before any read of an epoch is
                # that epoch's (docs/policy.md), so sent after the advance it
                # is the new epoch's, on the first epoch as on later ones
                c = self.client if self.client is not None else granary
                self.last_epoch = c.epoch(self.dataset, None if self.dataset else paths[0])
                self.last_hinted = c.hint(paths, self.dataset)
            except (OSError, ImportError) as e:
                if not self._warned:
                    warnings.warn("granary: epoch order not sent (%s); training goes on "
                                  "without it" % e, RuntimeWarning, stacklevel=3)
                    self._warned = True

        def __iter__(self):
            order = list(iter(self.sampler))
            indices = []
            for x in order:
                if isinstance(x, (list, tuple)):
                    indices.extend(int(i) for i in x)
                else:
                    indices.append(int(x))
            paths = [os.fspath(self.path_fn(i)) for i in indices]
            self.epochs += 1
            if paths:
                self._announce(paths)
            return iter(order)

    return HintedSampler
