/* Words for JSON values in error messages (the config file and the control
 * socket name a wrong type the same way). */
#ifndef KESTREL_JSON_TEXT_H
#define KESTREL_JSON_TEXT_H

#include <json-c/json.h>

/* "null", "a boolean", "an integer", "a string", ... for v's type. */
const char *json_type_text(json_object *v);

#endif
