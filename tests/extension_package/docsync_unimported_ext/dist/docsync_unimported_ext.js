/* docsync_unimported_ext */
