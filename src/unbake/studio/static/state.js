// What the views share: the server's limits and models, the jobs, the open mixer.
export const state = {
  models: [],
  config: null,
  jobs: new Map(),         // id -> job
  streams: new Map(),      // id -> EventSource for jobs still queued or running
  picked: [],              // files chosen for the next separation
  awaitingOpen: new Set(), // jobs submitted here: open the first to finish if nothing is open
  mixer: null,             // the open Mixer
};
