/** The data sets of docs/results.md: each one's folder under ../shared/data, its title, and whether its sweep runs. */
export const RESULT_SETS = [
  { name: 'routerbench', title: 'RouterBench (3,164 prompts, 11 LLMs with measured cost)', sweep: true },
  { name: 'zeroeval', title: 'ZeroEval (2,840 prompts; the 28 LLMs with complete outcomes)', sweep: true },
  { name: 'alpacaeval', title: 'AlpacaEval (805 chat instructions; the 45 LLMs with complete outcomes, graded preference)', sweep: false },
  { name: 'arenabench', title: 'Arena-Hard prompts (275 Chatbot Arena prompts, 15 LLMs, judge scores)', sweep: false },
];
