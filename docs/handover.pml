/* handover.pml: the planned hand-over of the leader lease (switchover,
 * pre-stop demote) as lib/decide.c, lib/election.c, lib/act.c and the
 * agent's control handler do it, checked exhaustively with spin:
 *
 *   spin -a docs/handover.pml && cc -O2 -DSAFETY -o pan pan.c && ./pan -m200000
 *
 * Three nodes; node 0 starts as the primary holding the lease. Every agent
 * observes the Lease (a copy that goes stale when anyone writes it), then
 * decides and does one thing per step, as a tick does; every write is a
 * compare-and-set that fails with 409 when the record changed since the
 * copy was read. Two operators ask for conflicting switchovers at any
 * time, another writes an annotation (or pauses the cluster), clients write to whichever PostgreSQL
 * is a primary and are acknowledged at once (asynchronous replication:
 * the hardest case for a hand-over), standbys receive WAL from a running
 * primary whenever theirs is a prefix of it, and every agent and every
 * PostgreSQL may crash and restart at every step. A holder's lease never
 * expires here (an agent restarts within its lease); that unplanned case
 * is safety rule 1's, not the hand-over's. A released lease naming a
 * successor may be taken by any eligible standby once the successor has
 * not taken it for one lease duration (a timeout that may fire at any
 * moment after the release here, which only adds behaviours).
 *
 * Checked in every reachable state (see the monitor and the asserts):
 *   - no acknowledged write is lost: a running primary holds every one;
 *   - never two primaries on one timeline, never two running primaries;
 *   - whoever promotes from a hand-over has replayed its final LSN, the
 *     very WAL of the old primary up to it;
 *   - a demoting leader never promotes again on its own.
 *
 * BUG_CLEAR_LSN, BUG_REACQUIRE and BUG_SWAP put back the three defects of
 * issue 16 (the acquisition cleared the final LSN, a 409 on release let the
 * leader take its lease back, a second request replaced the first); each
 * must make the check fail (tests/model/meson.build runs them). */

#define N       3
#define NONE    255
#ifndef MAXW
#define MAXW    2       /* client writes in a run */
#endif
#define MAXL    5       /* WAL records: writes and promotion records */
#define PROMO   8       /* promotion records have ids PROMO + timeline */
#ifndef CRASHES
#define CRASHES 1       /* crashes of agents and PostgreSQL servers in a run */
#endif

/* PostgreSQL of a node */
#define PG_STOPPED  0
#define PG_STANDBY  1
#define PG_PRIMARY  2

/* agent states (enum agent_state_kind) */
#define A_STARTING  0
#define A_REPLICA   1
#define A_CANDIDATE 2   /* holds the lease, PostgreSQL a standby: promoting */
#define A_PRIMARY   3
#define A_DEMOTING  4

/* the Lease record */
byte holder = 0;
byte succ = NONE;       /* pglease.io/successor */
byte slsn = 0;          /* pglease.io/successor-lsn: the final LSN, 0 = none */
byte req = NONE;        /* pglease.io/switchover */
bool paused = false;
bool stale[N];          /* written since this agent read it (its next CAS is a 409) */

/* PostgreSQL: state, standby marker, hold, timeline, WAL (write ids) */
byte pg[N];
bool marker[N];
bool held[N];
byte wlen[N];
byte wal[N * MAXL];     /* the WAL: record ids; the timeline is 1 + its promotion records */

/* ghosts for the checks */
byte nextw = 1;          /* next write id */
byte acked = 0;          /* bit per acknowledged write id */
byte tlused = 2;         /* bit per timeline that had a primary (1: node 0's) */
byte final[MAXL];        /* the old primary's WAL up to the final LSN */
byte crashes = CRASHES;  /* crash budget left */
bool demoting_life[N];   /* this agent life entered DEMOTING and nobody took the lease since */

/* Never two running primaries; no running primary lacks an acknowledged
 * write. Checked in every state. */
#define WB(n, i) (wlen[n] > i && wal[n * MAXL + i] < PROMO -> (1 << wal[n * MAXL + i]) : 0)
#define WBITS(n) (WB(n, 0) | WB(n, 1) | WB(n, 2) | WB(n, 3) | WB(n, 4))
#define HOLDS_ACKED(n) ((WBITS(n) & acked) == acked)
#define IS_PRIMARY(n) (pg[n] == PG_PRIMARY)
#define BAD ((IS_PRIMARY(0) + IS_PRIMARY(1) + IS_PRIMARY(2) > 1) || \
             (IS_PRIMARY(0) && !HOLDS_ACKED(0)) || (IS_PRIMARY(1) && !HOLDS_ACKED(1)) || \
             (IS_PRIMARY(2) && !HOLDS_ACKED(2)))

/* a's WAL is a prefix of b's (same write ids, same order) */
inline is_prefix(a, b, res) {
        res = (wlen[a] <= wlen[b]);
        j = 0;
        do
        :: j < wlen[a] && res -> res = (wal[a * MAXL + j] == wal[b * MAXL + j]); j++
        :: else -> break
        od;
        j = 0
}

inline written() {
        stale[0] = true; stale[1] = true; stale[2] = true
}

inline promote(me) {
        /* the successor (or whoever took a released lease carrying a
         * final LSN) has replayed exactly the old primary's WAL up to it */
        if
        :: slsn > 0 ->
                assert(wlen[me] >= slsn);
                k = 0;
                do
                :: k < slsn -> assert(wal[me * MAXL + k] == final[k]); k++
                :: else -> break
                od
        :: else -> skip
        fi;
        assert(!demoting_life[me]);
        assert(HOLDS_ACKED(me));
        /* the new timeline: PostgreSQL takes its own + 1 */
        t = 2;
        k = 0;
        do
        :: k < wlen[me] -> if :: wal[me * MAXL + k] >= PROMO -> t++ :: else -> skip fi; k++
        :: else -> break
        od;
        assert((tlused & (1 << t)) == 0);
        tlused = tlused | (1 << t);
        assert(wlen[me] < MAXL);
        wal[me * MAXL + wlen[me]] = PROMO + t;
        wlen[me]++;
        pg[me] = PG_PRIMARY;
        marker[me] = false;
        k = 0; t = NONE
}

proctype monitor() {
        atomic { BAD -> assert(!BAD) }
}

/* Clients: a running primary appends and acknowledges at once. */
inline client_write(n) {
        wal[n * MAXL + wlen[n]] = nextw;
        wlen[n]++;
        acked = acked | (1 << nextw);
        nextw++
}

proctype clients() {
end_cl:
        do
        :: atomic { nextw <= MAXW && pg[0] == PG_PRIMARY -> client_write(0) }
        :: atomic { nextw <= MAXW && pg[1] == PG_PRIMARY -> client_write(1) }
        :: atomic { nextw <= MAXW && pg[2] == PG_PRIMARY -> client_write(2) }
        od
}

/* Streaming: a running standby receives the next record of a running
 * primary whose WAL continues its own (else it has diverged and waits). */
inline stream(s, p) {
        is_prefix(s, p, ok);
        if
        :: ok -> wal[s * MAXL + wlen[s]] = wal[p * MAXL + wlen[s]]; wlen[s]++
        :: else -> skip
        fi;
        k = 0; ok = false
}

#define CAN_STREAM(s, p) (pg[s] == PG_STANDBY && pg[p] == PG_PRIMARY && wlen[s] < wlen[p])

proctype streaming() {
        byte k, j;
        bool ok;
end_str:
        do
        :: atomic { CAN_STREAM(1, 0) -> stream(1, 0) }
        :: atomic { CAN_STREAM(2, 0) -> stream(2, 0) }
        :: atomic { CAN_STREAM(0, 1) -> stream(0, 1) }
        :: atomic { CAN_STREAM(2, 1) -> stream(2, 1) }
        :: atomic { CAN_STREAM(0, 2) -> stream(0, 2) }
        :: atomic { CAN_STREAM(1, 2) -> stream(1, 2) }
        od
}

/* PostgreSQL crashes; its supervisor restarts it unless the agent holds
 * it down, as its standby marker says. */
inline sup_restart(n) {
        if
        :: marker[n] -> pg[n] = PG_STANDBY
        :: else -> pg[n] = PG_PRIMARY
        fi
}

proctype supervisors() {
end_sup:
        do
        :: atomic { crashes > 0 && pg[0] != PG_STOPPED -> pg[0] = PG_STOPPED; crashes-- }
        :: atomic { crashes > 0 && pg[1] != PG_STOPPED -> pg[1] = PG_STOPPED; crashes-- }
        :: atomic { crashes > 0 && pg[2] != PG_STOPPED -> pg[2] = PG_STOPPED; crashes-- }
        :: atomic { pg[0] == PG_STOPPED && !held[0] -> sup_restart(0) }
        :: atomic { pg[1] == PG_STOPPED && !held[1] -> sup_restart(1) }
        :: atomic { pg[2] == PG_STOPPED && !held[2] -> sup_restart(2) }
        od
}

/* The operator's requests (agent/control-handlers.c, handle_switchover):
 * one at a time; while one is on the lease or a hand-over is under way (a
 * successor or a final LSN on it) another is refused (exit 5). */
proctype operator(byte to) {
        atomic {
#ifdef BUG_SWAP
                holder != NONE && holder != to ->
                /* a request in progress is never replaced silently */
                assert(req == NONE && succ == NONE && slsn == 0);
                req = to; written()
#else
                holder != NONE && holder != to ->
                if
                :: req == NONE && succ == NONE && slsn == 0 -> req = to; written()
                :: else -> skip /* refused, naming the one in progress */
                fi
#endif
        }
}

/* Another write of the operator's annotations (agentctl pause or resume)
 * at any moment: every CAS in flight meets a 409. With PAUSE it pauses the
 * cluster: no automatic failover, a planned one still completes. */
proctype annotator() {
        atomic {
#ifdef PAUSE
                paused = true;
#endif
                written()
        }
}

/* peer_ahead(): a running standby with more WAL than me */
inline peer_ahead(me, res) {
        res = false;
        k = 0;
        do
        :: k < N -> if :: k != me && pg[k] == PG_STANDBY && wlen[k] > wlen[me] -> res = true :: else -> skip fi; k++
        :: else -> break
        od;
        k = 0
}

/* decide_best_successor(): the running standby with the most WAL */
inline best_successor(me, res) {
        res = NONE;
        k = 0;
        do
        :: k < N ->
                if
                :: k != me && pg[k] == PG_STANDBY && (res == NONE || wlen[k] > wlen[res]) -> res = k
                :: else -> skip
                fi;
                k++
        :: else -> break
        od;
        k = 0
}

/* the fast stop: walsenders ship everything to the connected standbys
 * (each may or may not be connected) */
inline fast_stop(me) {
        k = 0;
        do
        :: k < N ->
                if
                :: k != me && pg[k] == PG_STANDBY && pg[me] == PG_PRIMARY ->
                        is_prefix(k, me, ok);
                        if
                        :: ok ->
                                do
                                :: wlen[k] < wlen[me] -> wal[k * MAXL + wlen[k]] = wal[me * MAXL + wlen[k]]; wlen[k]++
                                :: else -> break
                                od
                        :: true
                        fi
                :: else -> skip
                fi;
                k++
        :: else -> break
        od;
        pg[me] = PG_STOPPED; held[me] = true; marker[me] = true;
        k = 0; ok = false
}

/* The holder's PostgreSQL is a standby (decide_holder_standby) */
inline holder_standby(me) {
        peer_ahead(me, ok);
        if
        :: paused && succ != me -> skip  /* paused: hold, do not promote */
        :: !(paused && succ != me) && ok ->
                /* a standby is ahead (the old primary, rejoined): hand it
                 * the lease, the final LSN kept */
                best_successor(me, t);
                if
                :: !stale[me] -> holder = NONE; succ = t; written(); leader = false; kind = A_REPLICA
                :: else -> skip
                fi
        :: !(paused && succ != me) && !ok && slsn > 0 && wlen[me] < slsn ->
                skip  /* wait for the final LSN, however long */
        :: !(paused && succ != me) && !ok && !(slsn > 0 && wlen[me] < slsn) ->
                promote(me); kind = A_CANDIDATE
        fi;
        ok = false; t = NONE
}

inline holder_act(me) {
        if
        :: pg[me] == PG_PRIMARY && kind == A_PRIMARY && req != NONE ->
                if
                :: pg[req] == PG_STANDBY ->
                        tgt = req; kind = A_DEMOTING; stopped = false; demoting_life[me] = true
                :: else -> /* refused: clear the request */
                        if
                        :: !stale[me] -> req = NONE; written()
                        :: else -> skip
                        fi
                fi
        :: pg[me] == PG_PRIMARY && !(kind == A_PRIMARY && req != NONE) ->
                /* renewal as a running primary: the hand-over is over */
                if
                :: !stale[me] -> succ = NONE; slsn = 0; written(); kind = A_PRIMARY
                :: else -> skip
                fi
        :: pg[me] == PG_STANDBY -> holder_standby(me)
        :: pg[me] == PG_STOPPED -> held[me] = false  /* start it; the marker decides */
        fi
}

inline demoting_act(me) {
        if
        :: !stopped -> fast_stop(me); L = wlen[me]; stopped = true
        :: stopped && !stale[me] ->
                /* release naming the target and the final LSN */
                k = 0;
                do
                :: k < L -> final[k] = wal[me * MAXL + k]; k++
                :: else -> break
                od;
                k = 0;
                holder = NONE; succ = tgt; slsn = L; written();
                leader = false
                /* kind stays DEMOTING, demoting_life set: until another
                 * member takes the lease this one may not */
        :: stopped && stale[me] -> /* 409: re-read; the demotion stands */
#ifdef BUG_REACQUIRE
                kind = A_STARTING; leader = false; stopped = false;
#endif
                skip

        fi
}

inline released_act(me) {
        if
        :: pg[me] == PG_PRIMARY -> pg[me] = PG_STOPPED; marker[me] = true; held[me] = true  /* fence */
        :: pg[me] == PG_STANDBY && kind != A_DEMOTING && !demoting_life[me] && (succ == me || !paused) && !stale[me] ->
                /* the successor at once; any other once the successor has
                 * not come for one lease duration (any moment here); never
                 * past a standby that is ahead */
                peer_ahead(me, ok);
                if
                :: !ok ->
                        holder = me;
#ifdef BUG_CLEAR_LSN
                        succ = NONE; slsn = 0;
#endif
                        req = NONE; written();
                        leader = true; kind = A_CANDIDATE;
                        demoting_life[0] = false; demoting_life[1] = false; demoting_life[2] = false
                :: else -> skip
                fi;
                ok = false
        :: else -> skip
        fi;

}

proctype agent(byte me) {
        /* the agent's memory: lost on a crash */
        byte kind = A_REPLICA;
        bool leader = false;       /* holds the lease in this life */
        byte tgt = NONE, L = 0, t = NONE;
        bool stopped = false;      /* DEMOTING: PostgreSQL stopped, L read */
        bool ok;
        byte k, j;

        if
        :: me == 0 -> kind = A_PRIMARY; leader = true
        :: else -> skip
        fi;
end_agent:
        do
        /* a crash and restart at any step: memory gone, PostgreSQL and
         * the data directory as they were */
        :: atomic {
                crashes > 0 ->
                crashes--;
                kind = A_STARTING; leader = false; tgt = NONE; L = 0; stopped = false;
                demoting_life[me] = false
           }
        /* a tick: decide on the Lease and act; a write fails with 409 when
         * the record changed since this agent last read it (its previous
         * tick), after which it has read it again */
        :: atomic {
                if
                :: holder == me && kind == A_DEMOTING -> demoting_act(me)
                :: holder == me && kind != A_DEMOTING && !leader ->
                        /* a restart within the lease: take it back first */
                        if
                        :: !stale[me] -> written(); leader = true
                        :: else -> skip
                        fi
                :: holder == me && kind != A_DEMOTING && leader -> holder_act(me)
                :: holder == NONE -> released_act(me)
                :: holder != NONE && holder != me ->
                        if
                        :: pg[me] == PG_PRIMARY -> pg[me] = PG_STOPPED; marker[me] = true; held[me] = true  /* fence */
                        :: pg[me] == PG_STOPPED -> marker[me] = true; held[me] = false  /* rejoin as its standby */
                        :: else -> skip
                        fi;
                        kind = A_REPLICA; leader = false
                fi;
                stale[me] = false
           }
        od
}

init {
        atomic {
                pg[0] = PG_PRIMARY;
                pg[1] = PG_STANDBY; marker[1] = true;
                pg[2] = PG_STANDBY; marker[2] = true;
                run monitor(); run clients(); run streaming(); run supervisors();
                run agent(0); run agent(1); run agent(2);
                run operator(1); run operator(2); run annotator()
        }
}
