/* metadata-embedded.h: the metadata schema's migrations compiled into the
 * binary (sql/embed.py writes their table from sql/NNN_name.sql). */
#ifndef PGLEASE_METADATA_EMBEDDED_H
#define PGLEASE_METADATA_EMBEDDED_H

#include <stddef.h>

struct metadata_embedded_migration {
        unsigned version;
        const char *name;
        const char *script;
};

/* Sorted by version, versions unique (checked by the generator). */
extern const struct metadata_embedded_migration metadata_embedded_migrations[];
extern const size_t metadata_embedded_migrations_n;

#endif
