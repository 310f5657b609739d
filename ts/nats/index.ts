// @push.rocks/smartipc/nats: smartipc across machines over a NATS server. Loads the NATS client
// (@nats-io/transport-node, an optional peer dependency) only when NatsBridge.connect is called.
export { NatsBridge } from './classes.natsbridge.js';
export { NatsClient } from './classes.natsclient.js';
export { NatsExposure } from './classes.natsexposure.js';
export { NatsSubjects, escapeToken, unescapeToken, encodeType, decodeType, encodeTopic, encodePattern, decodeTopic } from './nats.subjects.js';
export { NATS_HEADER, DEFAULT_NATS_NAMESPACE } from './nats.constants.js';
export type * from './interfaces.js';
