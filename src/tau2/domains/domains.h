/* domains.h — the compiled-in τ²-bench domains. Each is defined in its own
 * file of this folder; env.c's registry lists them. */
#ifndef TAU2_DOMAINS_H
#define TAU2_DOMAINS_H

#include "tau2/env.h"

extern const DomainSpec DOMAIN_AIRLINE;
extern const DomainSpec DOMAIN_RETAIL;
extern const DomainSpec DOMAIN_TELECOM;
extern const DomainSpec DOMAIN_MOCK;

/* Telecom's user (phone) side lives in telecom_user.c. */
extern const ToolDef TELECOM_USER_TOOLS[];
extern const int TELECOM_USER_N_TOOLS;
extern const ToolDef TELECOM_USER_FUNCS[];
extern const int TELECOM_USER_N_FUNCS;
/* The user DB's model, and filling in its pydantic defaults and types
 * (telecom_user.c). */
extern const DbModel TELECOM_USER_DB;
void telecom_user_normalize(Env *env);

/* Shared by domains: read a file under the domain folder into a new string. */
char *domain_read_text(const char *domain_dir, const char *file, char *err, size_t errlen);

#endif
