#!/bin/sh
exec /pglease/bin/agentctl demote --wait --timeout "${DEMOTE_TIMEOUT:-60}"
