"""Dataset registry, loaders and the prepared format the sandbox trains from.

Import each name from the module that defines it: ``registry`` (the datasets archsmith knows and
where their files are looked for), ``loaders`` (find and read any dataset), ``prepared`` (prepare
one on the host), ``prepared_format`` (the file the sandbox reads). This package itself imports
nothing: the sandbox imports ``archsmith.data.prepared_format`` with only numpy available, and no
module here may depend on the package's own namespace (which would make it a cycle).
"""
