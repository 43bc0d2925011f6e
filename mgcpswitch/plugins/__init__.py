"""
The drop-in plugin package of mgcpswitch.

Modules here (and in any C{mgcpswitch/plugins/} directory on C{sys.path},
thanks to L{pluginPackagePaths}) are scanned by
L{twisted.plugin.getPlugins}; the objects they define that provide
L{IPlugin} plus one of our plugin interfaces are available to enable by
name in the configuration.  See docs/PLUGINS.md.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))
__all__: list[str] = []
