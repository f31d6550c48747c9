/* oracle.h — scripted actors that play a task perfectly, for checking that
 * the environment and the evaluator agree with τ²-bench's gold data.
 *
 * The gold agent performs the task's gold assistant actions in order, asks
 * the user to perform the gold user actions when their turn comes
 * (telecom's phone actions), and finally states every communicate_info
 * string. The gold user opens with the scenario's reason for call, performs
 * the requested user actions, and stops once the agent has finished.
 *
 * The gold user also plays opposite a model agent: whenever the agent writes
 * to it, it performs the next run of the task's user actions (telecom's
 * phone), and when none remain it ends the call. */
#ifndef TAU2_ORACLE_H
#define TAU2_ORACLE_H

#include "tau2/episode.h"

typedef struct {
    const cJSON *actions; /* the task's gold actions (array or NULL) */
    int cursor;           /* next gold action of the gold agent */
    int user_cursor;      /* gold actions before it the user has performed or passed */
    int n_actions;
    bool agent_done;      /* the agent has said everything */
    bool user_spoke;      /* the user has stated the reason for calling */
    Actor agent;
    Actor user;
} Oracle;

void oracle_init(Oracle *o, const cJSON *task);
/* One gold episode of a task, played to the end by the gold agent and
 * user. NULL with err when the task's initial state cannot be applied. */
Episode *oracle_play(const Domain *d, const cJSON *task, const EpisodeOptions *opt, char *err, size_t errlen);

#endif
