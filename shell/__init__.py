"""condatainer's shell templates (`<artifact>.<shell>.j2`), rendered by condatainer.shellgen.

This directory sits at the top of the repository and is installed as the package
`condatainer.shell` (pyproject.toml maps it), so an installed wheel and an editable checkout
find the templates the same way: through this package's `__path__`.  It holds no code.
"""
