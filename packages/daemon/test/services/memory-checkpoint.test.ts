import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { checkpointFailure, connectionsClosedNote, toTheOutside } from '../../src/services/memory-checkpoint.js';

describe('memory checkpoint reports', () => {
  it('names what gVisor could not save, from runsc messages as they are printed', () => {
    const hostSocket = new Error(
      'runsc checkpoint failed: checkpoint failed: checkpointing container "abc": encoding error: Cannot save endpoint with bound host socket:\ngoroutine 185 [running]:\ngvisor.dev/gvisor/pkg/state.safely.func1() (exit code 128)',
    );
    assert.equal(checkpointFailure(hostSocket), 'Cannot save endpoint with bound host socket');
    const tcp = new Error(
      'runsc checkpoint failed: panic: save rejected due to unsupported endpoint state: endpoint cannot be saved in connected state: local 10.91.0.2:8000, remote 10.91.0.1:40122 &tcp.endpoint{TransportEndpointInfo:...}',
    );
    assert.equal(
      checkpointFailure(tcp),
      'cannot be saved in connected state: local 10.91.0.2:8000, remote 10.91.0.1:40122 &tcp.endpoint',
    );
    assert.equal(
      checkpointFailure(new Error('runsc checkpoint failed: timed out after 120000 ms')),
      'runsc checkpoint failed: timed out after 120000 ms',
    );
  });

  it('counts only connections to the outside: not into a served port, not over loopback', () => {
    const open = [
      { local: '10.91.0.2:8000', remote: '10.91.0.1:40122', state: 'CLOSE_WAIT' },
      { local: '10.91.0.2:51000', remote: '198.18.0.2:80', state: 'ESTABLISHED' },
      { local: '127.0.0.1:5432', remote: '127.0.0.1:41000', state: 'ESTABLISHED' },
      { local: '::1:41001', remote: '::1:6379', state: 'ESTABLISHED' },
    ];
    const listening = [
      { port: 8000, address: '0.0.0.0' },
      { port: 5432, address: '127.0.0.1' },
    ];
    assert.deepEqual(toTheOutside(open, listening), [open[1]]);
  });

  it('says which connections a pause closed, and nothing when there were none', () => {
    assert.equal(connectionsClosedNote([]), null);
    const one = { local: '10.91.0.2:51000', remote: '198.18.0.2:80', state: 'ESTABLISHED' };
    assert.equal(
      connectionsClosedNote([one]),
      'memory saved; 1 open TCP connection was closed (10.91.0.2:51000 -> 198.18.0.2:80): its process sees a reset on resume',
    );
    assert.match(
      connectionsClosedNote([one, one, one, one]) ?? '',
      /^memory saved; 4 open TCP connections were closed \(.*, \.\.\.\): their processes see a reset on resume$/,
    );
  });
});
