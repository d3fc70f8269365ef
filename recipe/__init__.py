"""The demo model's data and training, apart from the model itself: the synthetic audio-visual corpus
(speech synthesis, talking faces, scenes, noise, the word bank), the set of real human voices used as a
check, the training recipe, and the packaging of the shipped demo model into `models/demo/`. It may
import the model package (`smop_edge.models`); the model never imports it."""
