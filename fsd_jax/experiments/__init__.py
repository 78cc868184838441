"""The experiment layer: the grid of methods × tasks × seeds (:mod:`.grid`), the records it
keeps of finished runs (:mod:`.records`) and the report made from them (:mod:`.report`). It
reads the runs' configs from files (``grid.configs_dir``) and runs the library's stages; the
library never imports it."""
