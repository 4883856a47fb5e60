/** The CLI's own version, printed by `quanta version` and `--version-flag`. */
export const CLI_VERSION = '0.1.0';
